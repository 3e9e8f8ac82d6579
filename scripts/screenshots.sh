#!/usr/bin/env bash
# Regenerate the README's screenshots from a real run of the emulated lab (lab.toml), never from sample data:
#   docs/report-screenshot.png  the first screen of reports/<run>/report.html of the newest run
#   docs/trend-screenshot.png   the first screen of the trend page over those runs
# It runs `pytest -m datapath --lab lab.toml` RUNS times (default 3, so the newest run has a baseline and the
# sparklines and trend have points) into a private history under a temporary directory, then `vdpalab trend`,
# then renders both pages in headless Chromium (refusing a page with console errors or without its headline on
# the first screen). It builds and tears down the lab: on a shared machine run it under the lab lock.
# docs/screenshots.txt records which runs the pictures come from.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
LAB="${LAB:-lab.toml}"
work="$(mktemp -d /tmp/vdpalab-screenshots.XXXXXX)"
db="sqlite:///$work/history.sqlite"
for i in $(seq 1 "$RUNS"); do
  echo "== run $i of $RUNS: pytest -m datapath --lab $LAB"
  # a failing check is still a real run: its report shows the failure, so the picture stays honest
  .venv/bin/pytest -m datapath --lab "$LAB" --reports-dir "$work/reports" --results-db "$db" -p no:cacheprovider -q \
    || echo "(run $i exited $?)"
done
# exit status 1 means "a series regressed", which is a finding, not an error of this script
.venv/bin/vdpalab trend --db "$db" --out "$work/reports/trend" || [ $? -eq 1 ]
.venv/bin/python -m vdpalab.reports.browser "$work/reports/latest/report.html" docs/report-screenshot.png 1000
.venv/bin/python -m vdpalab.reports.browser "$work/reports/trend/index.html" docs/trend-screenshot.png 900
run="$(readlink "$work/reports/latest")"
{
  echo "docs/report-screenshot.png and docs/trend-screenshot.png: made by scripts/screenshots.sh on $(date -u +%FT%TZ)"
  echo "from $RUNS real runs of $LAB (emulated lab) on $(hostname); the report is run $run"
  echo "suite revision $(git rev-parse --short=12 HEAD)"
} > docs/screenshots.txt
cat docs/screenshots.txt
rm -rf "$work"
