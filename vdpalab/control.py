"""One entry point for bringing a lab with infrastructure up and down: the CLI and the test session both call it.

``lab_up`` = the infrastructure (``vdpalab.infra``: for the netns flavour namespaces, cables, OVS and sshd
daemons, what a real host already has),
then the bring-up layers over SSH (what the seed's procedure configures). ``lab_down`` is the
reverse: the layers restore what they changed from their journals, then the builder removes the
infrastructure. ``infra_up`` / ``infra_down`` are the builder alone, for callers (the session
fixture) that run the layers themselves.

``up`` is idempotent: on a lab that is up, the builder only probes and the layers find nothing to do.
``down`` also cleans a lab left half-built by a crash: when the layers have journals to undo but the
infrastructure is damaged (a daemon was killed), it is repaired first so the layers can reach it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdpalab.bringup import BringUp
from vdpalab.config import Lab
from vdpalab.errors import LabStateError, TeardownError
from vdpalab.hosts.factory import HostPool
from vdpalab.infra import Infrastructure, infrastructure_for
from vdpalab.logs import seconds

log = logging.getLogger(__name__)


def builder_for(lab: Lab) -> Infrastructure:
    """The lab's infrastructure; LabStateError for a hardware lab (nothing to build) or an unknown flavour."""
    infra = infrastructure_for(lab)
    if infra is None:
        raise LabStateError(f"lab {lab.lab.name!r} is a hardware lab: there is no infrastructure to build")
    return infra


def _bringup(lab: Lab, hosts: HostPool) -> BringUp:
    return BringUp(lab, hosts, lab.state_dir)


def _journals(lab: Lab) -> list[Path]:
    """The layers' journals that still hold something to restore."""
    directory = lab.state_dir / "journal"
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.json") if p.stat().st_size > 2)


def _touch(hosts: HostPool, name: str) -> None:
    try:
        hosts[name].run("true", timeout=10)
    except Exception:  # left for the layer that needs the host to report
        hosts.reset(name)


@contextmanager
def _warming(lab: Lab, hosts: HostPool, infra: Infrastructure) -> Iterator[None]:
    """Connect to the guests in the background while the host's layers run.

    A connection's first command costs ~70 ms (handshake plus the first session channel), mostly
    waiting; the host's layers (preflight, hugepages, ovs) come first, so by the time the guests
    layer needs its guests they are connected. Only when the infrastructure provides the guests
    (netns: their sshd is up before any layer); a qemu guest exists only once the guests layer booted it.
    """
    if not infra.provides_guests or not lab.guest:
        yield
        return
    pool = ThreadPoolExecutor(len(lab.guest), thread_name_prefix="vdpalab-warm")
    try:
        for guest in lab.guest:
            pool.submit(_touch, hosts, guest.name)
        yield
    finally:
        pool.shutdown(wait=True)


@dataclass
class LabHandle:
    """An emulated lab that is up: its builder, open hosts and what bring-up reported."""

    lab: Lab
    builder: Infrastructure
    hosts: HostPool
    build: Any  # the builder's report (netns_lab.BuildReport)
    outcomes: Mapping[str, Any] = field(default_factory=dict)  # layer name -> LayerOutcome
    timings: dict[str, float] = field(default_factory=dict)
    bringup_available: bool = True

    @property
    def changed(self) -> bool:
        """Whether anything was built or configured (False: the lab was already up and only probed)."""
        build_changed = bool(getattr(self.build, "changed", []))
        return build_changed or any(getattr(o, "changed", False) for o in self.outcomes.values())

    def close(self) -> None:
        self.hosts.close()

    def __enter__(self) -> LabHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def infra_up(lab: Lab) -> Any:
    """Build (or repair) the infrastructure only; returns the builder's report."""
    return builder_for(lab).up()


def infra_down(lab: Lab) -> list[str]:
    """Remove the infrastructure only (after the layers went down); returns what was removed."""
    return builder_for(lab).down()


def lab_up(lab: Lab, *, layers: bool = True, assume_up: bool = False) -> LabHandle:
    """Infrastructure, then the bring-up layers over SSH. The caller closes the handle's hosts."""
    builder = builder_for(lab)
    timings: dict[str, float] = {}
    with builder.lock():
        t0 = time.monotonic()
        build = builder.up()
        timings["infra_s"] = time.monotonic() - t0
        if not getattr(build, "changed", None):
            log.info("lab %s: infrastructure already up (probed in %s)", lab.lab.name, seconds(timings["infra_s"]))
        hosts = HostPool(lab)
        handle = LabHandle(lab, builder, hosts, build, timings=timings)
        if layers:
            bringup = _bringup(lab, hosts)
            t1 = time.monotonic()
            try:
                with _warming(lab, hosts, builder):
                    handle.outcomes = dict(bringup.up(assume_up=assume_up))
            except Exception:
                hosts.close()
                raise
            timings["layers_s"] = time.monotonic() - t1
        timings["total_s"] = time.monotonic() - t0
    return handle


def lab_down(lab: Lab) -> list[str]:
    """Layers down (from their journals), then the infrastructure; works on a half-built lab too.

    Returns what was done; raises TeardownError ({part: error}) only after everything that could be cleaned was.
    """
    builder = builder_for(lab)
    log.debug("lab %s: going down", lab.lab.name)
    started = time.monotonic()
    done: list[str] = []
    errors: dict[str, str] = {}
    with builder.lock():
        journals = _journals(lab)
        lost = getattr(builder, "host_state_lost", None)
        if journals and callable(lost) and lost():
            # the machine the layers configured is gone with all their changes (a lab VM that died): nothing to undo
            for path in journals:
                path.unlink(missing_ok=True)
            done.append(f"layer journals {[p.stem for p in journals]} dropped: the lab host's state died with it")
            journals = []
        if journals:
            try:
                if not builder.probe().ok:
                    # a killed sshd or vswitchd: restart them so the layers can undo their changes over SSH
                    repaired = builder.up()
                    done += [f"repaired: {c}" for c in getattr(repaired, "changed", [])]
            except Exception as exc:  # the repair failed: the layers are tried anyway, the builder still cleans up
                errors["infrastructure"] = f"repair before layers down: {type(exc).__name__}: {exc}"
            hosts = HostPool(lab)
            try:
                bringup = _bringup(lab, hosts)
                with _warming(lab, hosts, builder):
                    failed = bringup.down()
                errors.update(failed)
                done.append("layers down" + (f" ({len(failed)} with problems)" if failed else ""))
            except Exception as exc:  # the infrastructure still goes away; the error is reported after
                errors["layers"] = f"{type(exc).__name__}: {exc}"
            finally:
                hosts.close()
        try:
            done += builder.down()
        except LabStateError as exc:
            errors["infrastructure"] = str(exc)
    for line in done:
        log.debug("lab %s: %s", lab.lab.name, line)
    log.info("lab %s: down in %s (%d steps)", lab.lab.name, seconds(time.monotonic() - started), len(done))
    if errors:
        raise TeardownError(lab.lab.name, errors)
    return done


def lab_status(lab: Lab) -> dict[str, Any]:
    """The builder's probe plus which layers still hold journals (i.e. have changes to undo)."""
    status = builder_for(lab).status()
    status["journals"] = [p.stem for p in _journals(lab)]
    return status
