"""Open vSwitch: the seed's other_config, a restart when it matters, and the bridges (seed 7-4 to 7-6).

The seed's sequence is the spec::

    systemctl start openvswitch
    ovs-vsctl set Open_vSwitch . other_config:dpdk-init=true
    ovs-vsctl set Open_vSwitch . other_config:hw-offload=true other_config:tc-policy=none
    ovs-vsctl set Open_vSwitch . other_config:dpdk-socket-mem=1024,1024
    ovs-vsctl set Open_vSwitch . other_config:vhost-iommu-support=true
    ovs-vsctl set Open_vSwitch . other_config:dpdk-extra=" -w 0000:07:00.0,representor=[0],... -w 0000:07:00.1,..."
    systemctl restart openvswitch
    ovs-vsctl add-br br30-ovs -- set bridge br30-ovs datapath_type=netdev
    ovs-vsctl add-port br30-ovs ens2f0 -- set Interface ens2f0 type=dpdk options:dpdk-devargs=0000:07:00.0
    ovs-vsctl add-port br30-ovs ens2f0_0 -- set Interface ens2f0_0 type=dpdk \
        options:dpdk-devargs=0000:07:00.0,representor=[0]
    (the same for br31-ovs)

Only keys whose value differs are set; OVS is restarted only when a key read at start-up
changed (``RESTART_KEYS``); ``-a`` replaces ``-w`` from DPDK 20.11 on. Bridges and ports that
already exist as the lab says are left alone; ones that exist differently are reported, never
rewritten (the suite does not modify what it did not create). ``down`` removes the bridges and
ports it added, puts back the other_config values it changed (``ovs-vsctl remove Open_vSwitch .
other_config KEY`` for keys that did not exist, as in the seed's note) and restarts or stops OVS
as needed.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from vdpalab.config import BridgeSettings, PortSettings
from vdpalab.errors import LayerError, ParseError
from vdpalab.layers import _text
from vdpalab.layers.base import Evidence, Layer, PlannedCommand
from vdpalab.parsers.ovs import VSCTL_STATE_ARGV, VsctlShow, parse_vsctl_state

RESTART_PREFIXES = ("dpdk-",)
RESTART_KEYS = frozenset({"hw-offload", "tc-policy", "vhost-iommu-support", "vhost-postcopy-support"})
WHITESPACE_KEYS = frozenset({"dpdk-extra"})  # EAL arguments: compared word by word
# values that are paths on the lab host: relative ones are relative to the lab file, like every path in it
PATH_OPTIONS = frozenset({"vhost-server-path"})
PATH_EAL_ARGS = ("--huge-dir=",)


def needs_restart(key: str) -> bool:
    """Keys OVS reads only when it starts (DPDK init, offload) need a restart; the rest apply live."""
    return key.startswith(RESTART_PREFIXES) or key in RESTART_KEYS


def same_value(key: str, have: str | None, want: str) -> bool:
    if have is None:
        return False
    if key in WHITESPACE_KEYS:
        return have.split() == want.split()
    return have == want


def kv_arg(key: str, value: str) -> str:
    """``key=value`` as one shell word: bare when safe, else ``key="value"`` (the seed's quoting style)."""
    arg = f"{key}={value}"
    if shlex.quote(arg) == arg:
        return arg
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
    return f'{key}="{escaped}"'


@dataclass(frozen=True)
class OvsState:
    running: bool
    other_config: dict[str, str] = field(default_factory=dict)
    show: VsctlShow | None = None
    error: str = ""

    def bridge(self, name: str) -> Any:
        return self.show.bridges.get(name) if self.show else None

    def port_bridge(self, port: str) -> str | None:
        for bname, bridge in self.show.bridges.items() if self.show else []:
            if port in bridge.ports:
                return bname
        return None


class Ovs(Layer):
    name = "ovs"
    requires = ("preflight", "hugepages", "switchdev")

    def not_applicable(self) -> str | None:
        if not self.lab.bridge and not self.desired_groups():
            return "the lab has no [[bridge]] and no OVS settings"
        return None

    # --- what the lab wants ---
    def allow_flag(self) -> str:
        flag = self.lab.ovs.dpdk_allow_flag
        if flag != "auto":
            return flag
        dpdk = self.ctx.versions.get("dpdk")
        if dpdk and _text.version_tuple(dpdk) and _text.version_tuple(dpdk) < (20, 11):
            return "-w"
        return "-a"  # DPDK 20.11 renamed -w (--pci-whitelist) to -a (--allow); unknown versions get the new name

    def desired_groups(self) -> list[list[tuple[str, str]]]:
        """other_config in the seed's groups (one ``ovs-vsctl set`` per group), then the lab's extras."""
        ovs = self.lab.ovs
        groups: list[list[tuple[str, str]]] = []
        if ovs.dpdk:
            groups.append([("dpdk-init", "true")])
        offload = []
        if ovs.hw_offload:
            offload.append(("hw-offload", "true"))
        if ovs.tc_policy is not None:
            offload.append(("tc-policy", ovs.tc_policy))
        if offload:
            groups.append(offload)
        if ovs.socket_mem:
            groups.append([("dpdk-socket-mem", ovs.socket_mem)])
        if ovs.vhost_iommu_support is not None:
            groups.append([("vhost-iommu-support", "true" if ovs.vhost_iommu_support else "false")])
        if ovs.dpdk_devargs or ovs.dpdk_extra_args:
            flag = self.allow_flag()
            extra = " ".join(
                [f"{flag} {devargs}" for devargs in ovs.dpdk_devargs] + [self.eal_arg(a) for a in ovs.dpdk_extra_args]
            )
            groups.append([("dpdk-extra", extra)])
        for key, value in ovs.other_config.items():
            groups.append([(key, value)])
        return groups

    def lab_path(self, value: str) -> str:
        """A path from the lab file as the host must see it: relative ones become absolute (the lab file's dir)."""
        if os.path.isabs(value):
            return value
        return os.path.abspath(str(self.lab.resolve(value)))

    def eal_arg(self, arg: str) -> str:
        for prefix in PATH_EAL_ARGS:
            if arg.startswith(prefix):
                return prefix + self.lab_path(arg[len(prefix) :])
        return arg

    def port_options(self, port: PortSettings) -> dict[str, str]:
        return {k: self.lab_path(v) if k in PATH_OPTIONS else v for k, v in port.options.items()}

    def desired(self) -> dict[str, str]:
        return {k: v for group in self.desired_groups() for k, v in group}

    @property
    def restart_command(self) -> str | None:
        """The lab's command; a relative program path in it (the emulated-qemu lab's ovs-ctl) is made absolute."""
        cmd = self.lab.ovs.restart_command
        if cmd is None:
            return None
        program, sep, rest = cmd.partition(" ")
        if "/" in program:
            program = self.lab_path(program)
        return program + sep + rest

    def service_command(self, action: str) -> str | None:
        """start/stop from restart_command ("systemctl restart openvswitch" -> "systemctl start openvswitch")."""
        cmd = self.restart_command
        if cmd is None:
            return None
        words = cmd.split()
        if "restart" not in words:
            return cmd if action == "start" else None
        return " ".join(action if w == "restart" else w for w in words)

    # --- probe / plan ---
    def probe(self) -> OvsState:
        """One ``ovs-vsctl --format=json list`` of Open_vSwitch, Bridge, Port and Interface (one round trip, one
        database snapshot) gives other_config and what ``show`` printed, with every interface's ofport; a
        failure (no database) means OVS is not running."""
        result = self.read(VSCTL_STATE_ARGV)
        if not result.ok:
            return OvsState(False, error=(result.stderr.strip() or result.stdout.strip())[:300])
        try:
            state = parse_vsctl_state(result.stdout)
        except ParseError as exc:
            raise LayerError(self.name, f"unreadable ovs-vsctl list output on {result.host}: {exc}") from None
        return OvsState(True, state.other_config, state.show)

    def fresh_state(self) -> OvsState:
        """The seed's host: OVS installed by OFED, not started. Without a service command (emulated labs)
        OVS is the lab's own daemon, started with the lab and configured by nothing yet."""
        if self.restart_command is None:
            return OvsState(True, {}, None)
        return OvsState(False, error="(fresh host: OVS installed, not started)")

    def plan(self, state: Any | None = None) -> list[PlannedCommand]:
        st: OvsState = self.probe() if state is None else state
        out: list[PlannedCommand] = []
        if not st.running:
            start = self.service_command("start")
            if start is None:
                raise LayerError(self.name, f"OVS is not running ({st.error}) and lab.ovs.restart_command is not set")
            out.append(self.planned(start, "start OVS (seed 7-4)"))
            st = OvsState(True, {}, None)
        out += self.plan_config(st)
        out += self.plan_bridges(st)
        return out

    def changed_keys(self, st: OvsState) -> list[str]:
        return [k for k, v in self.desired().items() if not same_value(k, st.other_config.get(k), v)]

    def plan_config(self, st: OvsState) -> list[PlannedCommand]:
        out = []
        restart = False
        for group in self.desired_groups():
            todo = [(k, v) for k, v in group if not same_value(k, st.other_config.get(k), v)]
            if not todo:
                continue
            restart = restart or any(needs_restart(k) for k, _ in todo)
            args = " ".join(kv_arg(f"other_config:{k}", v) for k, v in todo)
            out.append(
                self.planned(f"ovs-vsctl set Open_vSwitch . {args}", "other_config " + ", ".join(k for k, _ in todo))
            )
        if restart:
            if self.restart_command is None:
                raise LayerError(
                    self.name, "changed other_config keys need an OVS restart but lab.ovs.restart_command is not set"
                )
            out.append(self.planned(self.restart_command, "apply the start-up keys (seed 7-4)"))
        return out

    def port_command(self, bridge: str, port: PortSettings) -> str:
        words = ["ovs-vsctl", "add-port", bridge, port.name]
        settings = []
        if port.type is not None:
            settings.append(f"type={port.type}")
        settings += [kv_arg(f"options:{k}", v) for k, v in self.port_options(port).items()]
        text = shlex.join(words)
        if settings:
            text += f" -- set Interface {shlex.quote(port.name)} " + " ".join(settings)
        return text

    def port_mismatch(self, st: OvsState, bridge: BridgeSettings, port: PortSettings) -> str | None:
        br = st.bridge(bridge.name)
        iface = br.ports[port.name].interfaces.get(port.name) if br and port.name in br.ports else None
        if iface is None:
            return f"port {port.name} of {bridge.name} has no interface {port.name}"
        if port.type is not None and (iface.type or "") != port.type:
            return f"interface {port.name} is type {iface.type or '(system)'}, the lab wants {port.type}"
        for key, value in self.port_options(port).items():
            if iface.options.get(key) != value:
                return f"interface {port.name} has options:{key}={iface.options.get(key)}, the lab wants {value}"
        return None

    def plan_bridges(self, st: OvsState) -> list[PlannedCommand]:
        out = []
        for bridge in self.lab.bridge:
            br = st.bridge(bridge.name)
            if br is None:
                out.append(
                    self.planned(
                        f"ovs-vsctl add-br {shlex.quote(bridge.name)} -- set bridge {shlex.quote(bridge.name)} "
                        f"datapath_type={bridge.datapath_type}",
                        f"bridge {bridge.name}",
                    )
                )
            elif (br.datapath_type or "system") != bridge.datapath_type:
                raise LayerError(
                    self.name,
                    f"bridge {bridge.name} exists with datapath_type {br.datapath_type or 'system'}, the lab wants "
                    f"{bridge.datapath_type}; the suite does not rewrite a bridge it did not create",
                )
            for port in bridge.ports:
                where = st.port_bridge(port.name)
                if where is None:
                    out.append(self.planned(self.port_command(bridge.name, port), f"port {port.name} on {bridge.name}"))
                elif where != bridge.name:
                    raise LayerError(self.name, f"port {port.name} is on bridge {where}, the lab wants {bridge.name}")
                else:
                    problem = self.port_mismatch(st, bridge, port)
                    if problem:
                        raise LayerError(self.name, f"{problem}; the suite does not rewrite a port it did not create")
        return out

    # --- up ---
    def up(self) -> bool:
        st = self.probe()
        changed = False
        if not st.running:
            start = self.plan(st)[0]  # raises when it cannot start OVS
            self.journal.record("started", start.command)
            self.execute([start])
            changed = True
            st = self.probe()
            if not st.running:
                raise LayerError(self.name, f"OVS still does not answer after {start.command!r}: {st.error}")
        planned = self.plan_config(st)
        if planned:
            for key in self.changed_keys(st):
                self.journal.record(f"other_config:{key}", st.other_config.get(key))
            if any(cmd.command == self.restart_command for cmd in planned):
                self.journal.record("restart_keys_changed", True)
            self.execute(planned)
            changed = True
            if any(cmd.command == self.restart_command for cmd in planned):
                st = self.probe()  # the bridges are read again from the restarted daemon
        planned = self.plan_bridges(st)
        for cmd in planned:
            words = shlex.split(cmd.command)
            if words[1] == "add-br":
                self.journal.record(f"bridge:{words[2]}", "added")
            elif words[1] == "add-port" and f"bridge:{words[2]}" not in self.journal:
                self.journal.record(f"port:{words[2]}:{words[3]}", "added")
        self.execute(planned)
        return changed or bool(planned)

    # --- verify ---
    def verify(self) -> Evidence:
        st = self.probe()
        if not st.running:
            return Evidence(False, f"OVS does not answer: {st.error}")
        problems, details = [], []
        for key, want in self.desired().items():
            have = st.other_config.get(key)
            if not same_value(key, have, want):
                problems.append(f"other_config:{key} is {have!r}, the lab wants {want!r}")
        details.append("other_config: " + ", ".join(f"{k}={v}" for k, v in sorted(st.other_config.items())))
        assert st.show is not None
        ours = {b.name for b in self.lab.bridge}
        for bname, br in st.show.bridges.items():
            for seen in br.ports.values():
                for iname, iface in seen.interfaces.items():
                    if iface.error:
                        msg = f"interface {iname} (bridge {bname}) error: {iface.error}"
                        (problems if bname in ours else details).append(msg)
        for bridge in self.lab.bridge:
            br = st.bridge(bridge.name)
            if br is None:
                problems.append(f"bridge {bridge.name} missing")
                continue
            if (br.datapath_type or "system") != bridge.datapath_type:
                problems.append(
                    f"bridge {bridge.name} datapath_type {br.datapath_type}, the lab wants {bridge.datapath_type}"
                )
            for port in bridge.ports:
                if port.name not in br.ports:
                    problems.append(f"port {port.name} missing from {bridge.name}")
                    continue
                problem = self.port_mismatch(st, bridge, port)
                if problem:
                    problems.append(problem)
                    continue
                ofport = br.ports[port.name].interfaces[port.name].ofport
                shown = "?" if ofport is None else str(ofport)
                details.append(f"{bridge.name} {port.name}: ofport {shown}")
                if ofport is None or ofport <= 0:
                    problems.append(f"interface {port.name} has no OpenFlow port (ofport {shown})")
        if problems:
            return Evidence(False, "; ".join(problems), tuple(details))
        return Evidence(
            True,
            f"bridges {', '.join(b.name for b in self.lab.bridge)} up, {len(self.desired())} other_config keys set",
            tuple(details),
        )

    # --- down ---
    def down_plan(self) -> list[PlannedCommand]:
        out = []
        for bridge in reversed(self.lab.bridge):
            if self.journal.get(f"bridge:{bridge.name}") == "added":
                out.append(self.planned(["ovs-vsctl", "del-br", bridge.name], "remove the bridge up added"))
                continue
            for port in reversed(bridge.ports):
                if self.journal.get(f"port:{bridge.name}:{port.name}") == "added":
                    out.append(
                        self.planned(["ovs-vsctl", "del-port", bridge.name, port.name], "remove the port up added")
                    )
        keys = [k.split(":", 1)[1] for k in self.journal.entries if k.startswith("other_config:")]
        order = list(self.desired()) + sorted(set(keys) - set(self.desired()))
        keys.sort(key=order.index)
        restore = [(k, self.journal.get(f"other_config:{k}")) for k in keys]
        removed = [k for k, before in restore if before is None]
        if removed:
            out.append(
                self.planned(
                    ["ovs-vsctl", "remove", "Open_vSwitch", ".", "other_config", *removed], "remove the keys up added"
                )
            )
        reset = [(k, before) for k, before in restore if before is not None]
        if reset:
            args = " ".join(kv_arg(f"other_config:{k}", v) for k, v in reset)
            out.append(self.planned(f"ovs-vsctl set Open_vSwitch . {args}", "put back the values up changed"))
        if self.journal.get("started"):
            stop = self.service_command("stop")
            if stop:
                out.append(self.planned(stop, "OVS was not running before up"))
        elif self.journal.get("restart_keys_changed") and self.restart_command:
            out.append(self.planned(self.restart_command, "apply the restored start-up keys"))
        return out
