#!/usr/bin/env bash
# Regenerate the README's screenshots from a real run of the emulated lab (lab.toml), never from sample data:
#   docs/report-screenshot.png  the first screen of reports/<run>/report.html of the newest run
#   docs/trend-screenshot.png   the first screen of the trend page over those runs
# It runs `pytest -m datapath --lab lab.toml` RUNS times (default 3) into a private history under a temporary
# directory, then `vdpalab trend`, then renders both pages in headless Chromium (refusing a page with console
# errors or without its headline on the first screen). The newest run must have a baseline (an earlier run of
# the series in which every check passed), so the pictures show a comparison: when it has none (every earlier
# run failed a check), the script stops, keeps the runs' reports and says which runs failed, instead of picturing
# "no baseline". A failing check is never retried away: the newest run's report shows whatever it found.
# It builds and tears down the lab: on a shared machine run it under the lab lock.
# docs/screenshots.txt records which runs the pictures come from. KEEP=1 keeps the runs' history and reports.
# FROM=DIR (a directory an earlier KEEP=1 run kept) runs no lab: it rebuilds the newest run's report from that
# history with today's code and lab file (`vdpalab report`), runs `vdpalab trend` again, and takes the pictures of
# those same real runs; docs/screenshots.txt says so. It needs no lab lock.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
LAB="${LAB:-lab.toml}"
if [ -n "${FROM:-}" ]; then
  work="$FROM"
  [ -f "$work/history.sqlite" ] && [ -f "$work/run-$RUNS.log" ] || { echo "screenshots.sh: $work is not a kept run directory" >&2; exit 2; }
else
  work="$(mktemp -d /tmp/vdpalab-screenshots.XXXXXX)"
fi
db="sqlite:///$work/history.sqlite"
failed_runs=()
for i in $(seq 1 "$RUNS"); do
  [ -z "${FROM:-}" ] || break
  echo "== run $i of $RUNS: pytest -m datapath --lab $LAB"
  # a failing check is still a real run: its report shows the failure, so the picture stays honest
  rc=0
  .venv/bin/pytest -m datapath --lab "$LAB" --reports-dir "$work/reports" --results-db "$db" -p no:cacheprovider -q \
    | tee "$work/run-$i.log" || rc=$?  # pipefail: pytest's exit status
  if [ "$rc" -ne 0 ]; then
    echo "(run $i exited $rc)"
    failed_runs+=("run $i: $(readlink "$work/reports/latest") exited $rc: $(grep -E '^(FAILED|ERROR) ' "$work/run-$i.log" \
      | head -3 | tr '\n' ' ')")
  fi
done
if grep -q "no baseline run in the history" "$work/run-$RUNS.log"; then
  echo "screenshots.sh: the newest run has no baseline (no earlier run passed every check), so the pictures would" >&2
  echo "not show a comparison; not taking them. Runs that failed:" >&2
  printf '  %s\n' "${failed_runs[@]}" >&2
  echo "Their reports and history are kept in $work/ (see why before running again)." >&2
  exit 1
fi
if [ -n "${FROM:-}" ]; then
  made="$(date -u -r "$work/run-$RUNS.log" +%FT%TZ)"  # when the last of the kept runs ended
  .venv/bin/vdpalab report latest --db "$db" --out "$work/reports"
fi
# exit status 1 means "a series regressed", which is a finding, not an error of this script
.venv/bin/vdpalab trend --db "$db" --out "$work/reports/trend" || [ $? -eq 1 ]
.venv/bin/python -m vdpalab.reports.browser "$work/reports/latest/report.html" docs/report-screenshot.png 1000
.venv/bin/python -m vdpalab.reports.browser "$work/reports/trend/index.html" docs/trend-screenshot.png 900
run="$(readlink "$work/reports/latest")"
{
  echo "docs/report-screenshot.png and docs/trend-screenshot.png: made by scripts/screenshots.sh on $(date -u +%FT%TZ)"
  echo "from $RUNS real runs of $LAB (emulated lab) on $(hostname); the report is run $run"
  grep -m1 "^verdict " "$work/run-$RUNS.log" | sed 's/^/its summary: /'
  [ "${#failed_runs[@]}" -eq 0 ] || printf 'an earlier run failed a check: %s\n' "${failed_runs[@]}"
  if [ -n "${FROM:-}" ]; then
    echo "the runs ended by $made (made by scripts/screenshots.sh; each report's header names its suite revision);"
    echo "report and trend page rebuilt from their history (FROM=$work) at suite revision $(git rev-parse --short=12 HEAD)"
  else
    echo "suite revision $(git rev-parse --short=12 HEAD)"
  fi
} > docs/screenshots.txt
cat docs/screenshots.txt
if [ -n "${KEEP:-}" ] || [ -n "${FROM:-}" ]; then echo "runs, reports and history kept in $work/"; else rm -rf "$work"; fi
