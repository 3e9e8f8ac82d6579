"""Which noise bands a history command uses: the lab file's ``[reports]`` bands, found the same way everywhere.

``vdpalab compare`` and ``vdpalab trend`` judge a change against the lab's own noise (``[reports]
noise_pct`` / ``default_noise_pct``), so they agree with the run's terminal summary. The lab file is
``--lab-file`` when given, else the one file the run was started with (its ``--lab``), when it still
loads here; else the default band, and the commands say which it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vdpalab.config import load_lab
from vdpalab.history.change import DEFAULT_NOISE_PCT, noise_band
from vdpalab.history.store import HistoryStore


@dataclass(frozen=True)
class NoiseBands:
    """A lab's per-metric noise bands in percent of the reference value, and where they come from."""

    pct: dict[str, float] = field(default_factory=dict)
    default_pct: float = DEFAULT_NOISE_PCT
    source: str = ""  # "lab.toml (the --lab of run X)"; empty: the built-in default
    absolute: dict[str, float] = field(default_factory=dict)  # [reports] noise_abs: in the metric's unit

    def band(self, metric: str, level: float) -> float:
        """Half-width, in the metric's unit, of the band around ``level`` inside which a change is noise."""
        return noise_band(metric, level, tolerances_pct=self.pct, default_pct=self.default_pct,
                          absolute=self.absolute)[0]

    def pct_of(self, metric: str) -> float:
        return self.pct.get(metric, self.default_pct)

    def describe(self) -> str:
        if not self.source:
            return f"±{self.default_pct:g}% default"
        absolute = f", noise_abs {', '.join(f'{k} ±{v:g}' for k, v in sorted(self.absolute.items()))}" \
            if self.absolute else ""
        return f"{self.source} [reports] noise_pct, default ±{self.default_pct:g}%{absolute}"


def lab_file_of_run(store: HistoryStore, ref: str, problems: list[str] | None = None) -> str | None:
    """The one lab file a run was started with (``--lab FILE`` in its pytest arguments), if it loads here
    (why not goes to ``problems``)."""
    run_id = store.resolve(ref)
    args = list(store.load_run(run_id).pytest_args)
    files = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--lab"]
    files += [a.split("=", 1)[1] for a in args if a.startswith("--lab=")]
    if len(files) != 1 or not Path(files[0]).is_file():
        if problems is not None:
            problems.append(f"run {run_id} names no lab file that is here")
        return None
    try:
        load_lab(files[0])
    except Exception as exc:  # changed or broken since: the default bands, said so, rather than no comparison
        if problems is not None:
            problems.append(f"{files[0]}, the --lab of run {run_id}, does not load: {str(exc).splitlines()[0]}")
        return None
    return files[0]


def bands_from_file(path: str, how: str) -> NoiseBands:
    settings = load_lab(path).reports
    return NoiseBands(dict(settings.noise_pct), settings.default_noise_pct, f"{path} ({how})",
                      dict(settings.noise_abs))


def bands_for_run(store: HistoryStore, ref: str, lab_file: str | None = None, who: str = ""
                  ) -> tuple[NoiseBands, str]:
    """The bands to judge run ``ref`` (called ``who``: "run B") with (``lab_file`` first, else the run's own
    ``--lab``) and one line saying which they are."""
    if lab_file:
        bands = bands_from_file(lab_file, "--lab-file")
        return bands, f"noise bands: {bands.describe()}"
    problems: list[str] = []
    found = lab_file_of_run(store, ref, problems)
    if found:
        bands = bands_from_file(found, f"the --lab of {who or 'run ' + store.resolve(ref)}")
        return bands, f"noise bands: {bands.describe()}"
    bands = NoiseBands()
    return bands, f"noise bands: {bands.describe()} ({problems[0]}; see --lab-file)"
