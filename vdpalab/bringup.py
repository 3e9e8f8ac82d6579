"""Bring a lab up layer by layer, record why anything is missing, and take it down again.

``BringUp`` runs the layers of ``LAYER_ORDER`` once each (no retries). A layer whose
``requires`` is broken is not run: it becomes BROKEN with ``requires X: <X's reason>``, so every
test that depends on it is an ERROR naming the root cause. The outcomes live in memory: a test
run keeps them in one place, its session record (``vdpalab.session``, ``STATE_DIR/session.json``),
which every xdist worker and the history read. What must outlive the process is what ``down``
undoes, and that is in the journals (``STATE_DIR/journal/LAYER.json``), so ``down`` works from a
fresh process.

Typical use (the pytest fixtures do this)::

    bring = BringUp(lab, HostPool(lab), Path(".state/cx6dx-qemu"))
    outcomes = bring.up()                    # or bring.up(assume_up=True): verify only
    reason = bring.skip_reason("vdpa")       # None when the layer is up
    errors = bring.down()                    # reverse order, keeps going, {layer: error}
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path

from vdpalab.config import Lab
from vdpalab.errors import VdpaLabError
from vdpalab.hosts.base import Host
from vdpalab.layers import LAYER_CLASSES, LAYER_ORDER, layer_order
from vdpalab.layers.base import (
    Layer,
    LayerContext,
    LayerOutcome,
    LayerStatus,
    PlannedCommand,
    run_layer,
)
from vdpalab.logs import seconds

log = logging.getLogger(__name__)

__all__ = ["LAYER_ORDER", "BringUp"]


class BringUp:
    """The layers of one lab, with their outcomes.

    ``hosts`` maps ``"host"`` and each guest name to a Host (a lazily connecting ``HostPool`` is
    best: guests are only dialled once the guests layer started them). ``keep_going=False`` stops
    running layers after the first broken one (the rest are marked BROKEN with the reason);
    ``keep_going=True`` still runs every layer whose requirements are met.
    """

    def __init__(
        self,
        lab: Lab,
        hosts: Mapping[str, Host],
        state_dir: Path,
        *,
        keep_going: bool = False,
        layers: Iterable[str] | None = None,
    ) -> None:
        self.lab = lab
        self.state_dir = Path(state_dir)
        self.keep_going = keep_going
        names = list(LAYER_ORDER if layers is None else layers)
        unknown = [n for n in names if n not in LAYER_CLASSES]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}; known: {', '.join(LAYER_ORDER)}")
        self.ctx = LayerContext(lab=lab, hosts=hosts, state_dir=self.state_dir)
        self.layers: dict[str, Layer] = {n: LAYER_CLASSES[n](self.ctx) for n in layer_order(lab) if n in names}
        self._outcomes: dict[str, LayerOutcome] = {}

    # --- results ---
    @property
    def outcomes(self) -> dict[str, LayerOutcome]:
        return dict(self._outcomes)

    @property
    def versions(self) -> dict[str, str | None]:
        return dict(self.ctx.versions)

    def skip_reason(self, layer: str) -> str | None:
        """Why a test needing ``layer`` must skip (None when it is up)."""
        outcome = self._outcomes.get(layer)
        if outcome is None:
            return f"layer {layer} has not been brought up"
        if outcome.status is LayerStatus.UP:
            return None
        if outcome.status is LayerStatus.DOWN:
            return f"layer {layer} is down"
        return outcome.skip_reason

    def not_applicable(self) -> dict[str, str]:
        return {name: reason for name, layer in self.layers.items() if (reason := layer.not_applicable())}

    # --- plan ---
    def plan(self, *, offline: bool = False) -> dict[str, list[PlannedCommand]]:
        """Every changing command bring-up would run, per layer, in order; nothing is changed.

        Live, each layer probes the host (read-only commands only); ``offline=True`` plans from a
        fresh host (the seed's starting point) without any connection. Later layers are planned
        against the host as it is now, so their plan assumes the earlier layers succeed as planned.
        """
        plans: dict[str, list[PlannedCommand]] = {}
        for name, layer in self.layers.items():
            if layer.not_applicable():
                plans[name] = []
                continue
            if offline:
                plans[name] = layer.plan(layer.fresh_state())
            else:
                if name == "preflight":
                    layer.probe()  # versions (DPDK -> -a/-w) and the safety checks, read-only
                elif "preflight" not in self.layers and not self.ctx.versions:
                    LAYER_CLASSES["preflight"](self.ctx).probe()  # the versions a later layer plans by
                plans[name] = layer.plan()
        return plans

    def down_plan(self) -> dict[str, list[PlannedCommand]]:
        """What ``down`` would run, from the journals alone, in teardown order."""
        return {name: self.layers[name].down_plan() for name in reversed(list(self.layers))}

    # --- up / down ---
    def up(self, assume_up: bool = False) -> dict[str, LayerOutcome]:
        """Run (or with ``assume_up`` only verify) each layer once, in order; returns the outcomes."""
        self._outcomes = {}
        stopped: LayerOutcome | None = None
        for name, layer in self.layers.items():
            blocker = self._blocker(layer)
            if blocker is not None:
                outcome = LayerOutcome(layer=name, status=LayerStatus.BROKEN, reason=blocker)
                log.error("lab %s: layer %s: not run: %s", self.lab.lab.name, name, blocker)
            elif stopped is not None and not self.keep_going and not layer.not_applicable():
                outcome = LayerOutcome(
                    layer=name,
                    status=LayerStatus.BROKEN,
                    reason=f"not run: layer {stopped.layer} broke first ({stopped.reason})",
                )
                log.error("lab %s: layer %s: %s", self.lab.lab.name, name, outcome.reason)
            else:
                outcome = self._run(layer, assume_up)
            self._outcomes[name] = outcome
            if outcome.status is LayerStatus.BROKEN and stopped is None:
                stopped = outcome
        return self.outcomes

    def _run(self, layer: Layer, assume_up: bool) -> LayerOutcome:
        """``run_layer`` between two progress lines: what starts, then how it ended and how long it took."""
        lab = self.lab.lab.name
        if layer.not_applicable():
            outcome = run_layer(layer, assume_up=assume_up)
            log.info("lab %s: layer %s: %s (%s)", lab, layer.name, outcome.status.value, outcome.reason)
            return outcome
        log.info("lab %s: layer %s: %s", lab, layer.name, "verifying" if assume_up else "starting")
        started = time.monotonic()
        outcome = run_layer(layer, assume_up=assume_up)
        elapsed = seconds(time.monotonic() - started)
        if outcome.status is LayerStatus.UP:
            note = "changed" if outcome.changed else "nothing to change"
            log.info("lab %s: layer %s: up in %s (%s)", lab, layer.name, elapsed, note)
        else:
            log.error("lab %s: layer %s: %s in %s: %s", lab, layer.name, outcome.status.value, elapsed, outcome.reason)
        for command in outcome.commands_run:
            log.debug("lab %s: layer %s changed: %s", lab, layer.name, command)
        return outcome

    def _blocker(self, layer: Layer) -> str | None:
        for req in layer.requires:
            dep = self._outcomes.get(req)
            if dep is None:
                if req in self.layers:
                    return f"requires {req}: it has not run"
                continue  # a layer left out of this BringUp (layers=...) is the caller's business
            if dep.status is LayerStatus.BROKEN:
                return f"requires {req}: {dep.reason}"
        return None

    def down(self) -> dict[str, str]:
        """Every layer's ``down`` in reverse order; errors are collected, not raised. Returns {layer: error}."""
        errors: dict[str, str] = {}
        for name in reversed(list(self.layers)):
            layer = self.layers[name]
            if layer.not_applicable():
                continue
            log.debug("lab %s: layer %s: taking down", self.lab.lab.name, name)
            started = time.monotonic()
            try:
                layer.down()
            except Exception as exc:  # keep going: the other layers still restore their part
                if isinstance(exc, VdpaLabError):
                    errors[name] = f"{type(exc).__name__}: {exc}"
                else:  # a bug in the layer's down: the traceback goes into the verdict
                    errors[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
                log.error("lab %s: layer %s: down failed: %s", self.lab.lab.name, name, errors[name])
                continue
            log.info("lab %s: layer %s: down in %s", self.lab.lab.name, name, seconds(time.monotonic() - started))
            outcome = self._outcomes.get(name) or LayerOutcome(layer=name)
            outcome.status = LayerStatus.DOWN
            outcome.reason = "taken down"
            self._outcomes[name] = outcome
        return errors
