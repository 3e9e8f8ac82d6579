"""One lab's bring-up for a whole test run, done exactly once however many processes ask.

The first process that needs the lab (the only one without xdist, or the first
xdist worker) takes a file lock, builds the lab's infrastructure when it has one
(``vdpalab.infra``: an emulated lab's stand-in hardware), runs the bring-up layers and writes their outcomes to
``session.json``. Every other process of the same run waits on the lock and
attaches: it reads the same outcomes (so a broken layer is the same skip reason
everywhere) and opens its own SSH connections. Teardown happens once, in the
process that owns the run (the xdist controller, or the only process), after
every worker has finished. A bring-up that raises is recorded as the lab's
``infra_error`` like a failed build, so no other process retries it.

Each step is a DEBUG record of the session's own logger (``vdpalab.session.<lab>``), which a
handler appends as a line (time, pid, run id) to the lab's ``session-events.log``:
``bringup-start``/``bringup-end`` by the process that brought the lab up, ``attach``
by each other process, ``detach`` when a worker is done, ``teardown-start``/``-end``
(or ``keep-up``) by the owner: the proof that bring-up and teardown ran once per run. Progress
(bring-up and teardown starting and ending, with elapsed time) is INFO of ``vdpalab.session``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from vdpalab import control
from vdpalab.bringup import BringUp
from vdpalab.config import Lab
from vdpalab.errors import TeardownError, VdpaLabError
from vdpalab.hosts.factory import HostPool
from vdpalab.infra import has_infrastructure
from vdpalab.layers.base import LayerOutcome, LayerStatus, outcome_from_dict, outcome_to_dict
from vdpalab.logs import AppendFileHandler, own_logger, seconds

log = logging.getLogger(__name__)

EVENTS_FORMAT = "%(created).6f pid=%(process)d run=%(run_id)s %(message)s"


class LayerUnavailable(Exception):
    """A layer a test depends on cannot exist in this lab (NOT APPLICABLE): the test skips with ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class LayerBroken(Exception):
    """A layer a test depends on (or the lab's infrastructure) BROKE: the test is an ERROR with ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class BringUpBug(Exception):
    """Bring-up raised an exception outside the suite's error family: a bug, shown with its traceback."""

    def __init__(self, traceback_text: str) -> None:
        self.traceback_text = traceback_text
        super().__init__(traceback_text)


@dataclass
class SessionRecord:
    """What ``session.json`` holds: who brought the lab up, for which run, and how each layer ended."""

    run_id: str
    owner_pid: int
    started: float
    infra_error: str = ""
    outcomes: dict[str, LayerOutcome] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    torn_down: bool = False
    log_marker: dict[str, Any] | None = None
    bug: str = ""  # the traceback of a bring-up that raised something outside the suite's error family
    teardown_errors: dict[str, str] = field(default_factory=dict)  # part ("infrastructure" or a layer) -> error

    def to_json(self) -> str:
        return json.dumps(
            {
                "run_id": self.run_id,
                "owner_pid": self.owner_pid,
                "started": self.started,
                "infra_error": self.infra_error,
                "outcomes": {k: outcome_to_dict(v) for k, v in self.outcomes.items()},
                "versions": self.versions,
                "torn_down": self.torn_down,
                "log_marker": self.log_marker,
                "bug": self.bug,
                "teardown_errors": self.teardown_errors,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> SessionRecord:
        data = json.loads(text)
        return cls(
            run_id=data["run_id"],
            owner_pid=data["owner_pid"],
            started=data["started"],
            infra_error=data.get("infra_error", ""),
            outcomes={k: outcome_from_dict(v) for k, v in data.get("outcomes", {}).items()},
            versions=data.get("versions", {}),
            torn_down=data.get("torn_down", False),
            log_marker=data.get("log_marker"),
            bug=data.get("bug", ""),
            teardown_errors=dict(data.get("teardown_errors", {})),
        )


def _summary(record: SessionRecord) -> str:
    """``6 up, 3 skipped`` (or the infrastructure error) for the bring-up's last progress line."""
    if record.bug:
        return "bring-up raised a bug"
    if record.infra_error:
        return f"lab unusable ({record.infra_error})"
    counts: dict[str, int] = {}
    for outcome in record.outcomes.values():
        counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "no layers"


def _root_cause(outcomes: dict[str, LayerOutcome], name: str) -> str:
    """``layer hugepages broken: <its reason>``: the layer that really broke, whichever layer the test needs.

    A layer that did not run because another broke carries ``requires X: ...`` or ``not run: layer X
    broke first (...)``; the chain is followed to the layer that really broke.
    """
    chain = [name]
    outcome = outcomes[name]
    while True:
        reason = outcome.reason
        if reason.startswith("requires "):
            dep = reason[len("requires "):].split(":", 1)[0]
        elif reason.startswith("not run: layer "):
            dep = reason[len("not run: layer "):].split(" ", 1)[0]
        else:
            break
        if dep not in outcomes or dep in chain:
            break
        chain.append(dep)
        outcome = outcomes[dep]
    return f"layer {chain[-1]} broken: {outcome.reason}"


class LabSession:
    """Bring-up once per run, attach everywhere else, tear down once."""

    def __init__(
        self,
        lab: Lab,
        *,
        run_id: str,
        keep_up: bool = False,
        assume_up: bool = False,
    ) -> None:
        self.lab = lab
        self.run_id = run_id
        self.keep_up = keep_up
        self.assume_up = assume_up
        self.state_dir = lab.state_dir
        self.hosts = HostPool(lab)
        self.record: SessionRecord | None = None
        self.events_log = self.state_dir / "session-events.log"
        self.events = own_logger(log, lab.lab.name)
        self.events.addHandler(AppendFileHandler(self.events_log, EVENTS_FORMAT))

    # --- files ---
    @property
    def _record_path(self) -> Path:
        return self.state_dir / "session.json"

    def _lock(self) -> FileLock:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.state_dir / "session.lock"))

    def _event(self, what: str) -> None:
        """A line in the lab's own log: the proof that bring-up and teardown ran once."""
        self.events.debug("%s", what, extra={"run_id": self.run_id})

    def load_record(self) -> SessionRecord | None:
        """This run's record as written by whichever process brought the lab up (None when it never came up)."""
        record = self._read_record()
        if record is None or record.run_id != self.run_id:
            return None
        return record

    def _read_record(self) -> SessionRecord | None:
        try:
            return SessionRecord.from_json(self._record_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return None

    def _write_record(self, record: SessionRecord) -> None:
        tmp = self._record_path.with_suffix(".tmp")
        tmp.write_text(record.to_json())
        tmp.replace(self._record_path)

    # --- bring-up ---
    def ensure_up(self) -> SessionRecord:
        """Bring the lab up for this run, or attach to the bring-up another process of the run did.

        A failure of the suite's own error family (``VdpaLabError``: LayerError, HostError,
        LabStateError, ...) is recorded (BROKEN infrastructure or layer). Anything else is a bug:
        its traceback is recorded too (so no other process retries) and the exception propagates.
        """
        if self.record is not None:
            return self.record
        with self._lock():
            existing = self._read_record()
            if existing is not None and existing.run_id == self.run_id and not existing.torn_down:
                self._event("attach")
                self.record = existing
                return existing
            record = SessionRecord(run_id=self.run_id, owner_pid=os.getpid(), started=time.time())
            name = self.lab.lab.name
            self._event("bringup-start")
            log.info("lab %s: bring-up started (run %s)", name, self.run_id)
            started = time.monotonic()
            try:
                try:
                    self._infra_up()
                except VdpaLabError as exc:  # the whole lab is unusable: every lab test is an ERROR with this
                    record.infra_error = f"{type(exc).__name__}: {exc}"
                    log.error("lab %s: infrastructure failed: %s", name, record.infra_error)
                if not record.infra_error:
                    record.log_marker = self._take_marker()
                    record.outcomes, record.versions = self._layers_up()
            except BaseException:
                record.bug = traceback.format_exc()
                log.error("lab %s: bring-up raised (a bug): %s", name, record.bug.strip().splitlines()[-1])
                raise
            finally:
                self._write_record(record)
                self._event("bringup-end")
                log.info("lab %s: bring-up ended in %s: %s", name, seconds(time.monotonic() - started),
                         _summary(record))
                self.record = record
            return record

    def _infra_up(self) -> None:
        """Build the lab's stand-in hardware, if it has any (``vdpalab.infra``; a hardware lab has none)."""
        if not has_infrastructure(self.lab):
            return
        control.infra_up(self.lab)

    def _take_marker(self) -> dict[str, Any] | None:
        """Where the host's kernel log stands before the guests start (the vDPA evidence reads after it)."""
        from vdpalab.evidence import take_marker

        try:
            return take_marker(self.hosts["host"]).to_dict()
        except Exception as exc:
            log.warning("lab %s: no kernel-log marker: %s", self.lab.lab.name, exc)
            return None

    def _down(self, record: SessionRecord) -> dict[str, str]:
        """Layers restore from their journals, then the lab's infrastructure (if any) goes.

        With infrastructure ``control.lab_down`` does both, repairing a killed daemon first
        so the layers can still be undone over SSH. Returns {part: error} for every part whose
        restore failed ("infrastructure" or a layer's name).
        """
        if has_infrastructure(self.lab):
            try:
                control.lab_down(self.lab)  # logs what it did
            except TeardownError as exc:
                return dict(exc.problems)
            return {}
        if record.infra_error:
            return {}
        pool = HostPool(self.lab)
        try:
            return BringUp(self.lab, pool, self.state_dir).down()
        finally:
            pool.close()

    def _layers_up(self) -> tuple[dict[str, LayerOutcome], dict[str, str | None]]:
        bringup = BringUp(self.lab, self.hosts, self.state_dir)
        outcomes = bringup.up(assume_up=self.assume_up)
        versions = dict(getattr(bringup, "versions", {}) or {})
        return dict(outcomes), versions

    def require(self, *layers: str) -> None:
        """Return when every named layer is up; else raise what the test must become.

        LayerUnavailable (skip) when a layer is NOT APPLICABLE in this lab; LayerBroken (error)
        when the infrastructure or a layer broke; BringUpBug when bring-up raised a bug. Every
        process of a run reads the same record, so every test ends the same way.
        """
        record = self.ensure_up()
        if record.bug:
            raise BringUpBug(f"bring-up of lab {self.lab.lab.name} raised a bug (no layer outcome):\n{record.bug}")
        if record.infra_error:
            raise LayerBroken(f"infrastructure of lab {self.lab.lab.name} broken: {record.infra_error}")
        for name in layers:
            outcome = record.outcomes.get(name)
            if outcome is None:
                raise LayerBroken(f"layer {name} did not run in lab {self.lab.lab.name}")
            if outcome.status is LayerStatus.NOT_APPLICABLE:
                raise LayerUnavailable(outcome.skip_reason)
            if outcome.status is not LayerStatus.UP:
                raise LayerBroken(_root_cause(record.outcomes, name))

    # --- teardown ---
    def close(self) -> None:
        """A process other than the owner is done with the lab: close its connections (no teardown).

        A process that used the lab says so in the lab's log (``detach``), so the log shows
        that teardown started only after the last worker let go.
        """
        self.hosts.close()
        if self.record is not None:
            self._event("detach")

    def teardown(self) -> dict[str, str]:
        """Once per run, by the owning process: restore what bring-up changed, then remove the infrastructure.

        Returns {part: error} for each restore that failed (empty when all went well or nothing was
        to do): part of the run's verdict, so the caller records it and makes the run red.
        """
        self.hosts.close()
        with self._lock():
            record = self._read_record()
            if record is None or record.run_id != self.run_id or record.torn_down:
                return {}
            name = self.lab.lab.name
            if self.keep_up:
                self._event("keep-up")
                log.info("lab %s: left up (--keep-up)", name)
                return {}
            self._event("teardown-start")
            log.info("lab %s: teardown started", name)
            started = time.monotonic()
            errors: dict[str, str] = {}
            try:
                errors = self._down(record)
            except VdpaLabError as exc:
                errors["infrastructure"] = f"{type(exc).__name__}: {exc}"
            except Exception:
                errors["teardown"] = "a bug in teardown:\n" + traceback.format_exc()
            record.torn_down = True
            record.teardown_errors = errors
            self._write_record(record)
            self._event("teardown-end" + (f" errors={sorted(errors)}" if errors else ""))
            elapsed = seconds(time.monotonic() - started)
            if errors:
                log.error("lab %s: TEARDOWN FAILED in %s: %s", name, elapsed,
                          "; ".join(f"{part}: {error}" for part, error in errors.items()))
            else:
                log.info("lab %s: teardown done in %s", name, elapsed)
            return errors
