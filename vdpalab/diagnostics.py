"""What to look at when a datapath test fails, gathered in one go and attached to the report.

``collect_diagnostics(lab, hosts, since_marker)`` returns named text sections: the
host's kernel log since the marker, the tail of ovs-vswitchd.log, the host's CPU load and
pressure (a loaded host explains latency outliers), ``ovs-vsctl show``,
the datapath flows, OpenFlow flows and port counters per bridge, each guest's
links (with counters), addresses and neighbours read with ``ip -j`` and summed up, guest
console logs when the lab keeps them (and the lab VM's console when the lab host stopped answering), and
the command history of every host involved.

It must never make a bad situation worse: every command has a short timeout, a
host that turns out unreachable is not asked again (one line says so), and no
exception escapes. A dead guest costs one connect timeout, not one per command.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from vdpalab.config import Lab
from vdpalab.errors import HostUnreachable, ParseError
from vdpalab.evidence import LogMarker, is_harmless_ovs_line, kernel_log_command, records_after
from vdpalab.guests import driver_for
from vdpalab.hosts.base import CommandHistory, CommandResult, Host, run_json_or_text, to_shell
from vdpalab.parsers.iplink import parse_ip_addr, parse_ip_link, parse_ip_neigh
from vdpalab.parsers.kernel_log import parse_kernel_log

COMMAND_TIMEOUT = 8.0
HISTORY_LIMIT = 200
LOG_TAIL_LINES = 200
SECTION_LIMIT = 100_000  # characters per section: a report stays readable

OVS_LOG = (
    'for f in "${OVS_LOGDIR:-/nonexistent}/ovs-vswitchd.log" /var/log/openvswitch/ovs-vswitchd.log; do '
    f'if [ -r "$f" ]; then echo "== $f"; tail -n {LOG_TAIL_LINES} "$f"; exit 0; fi; done; '
    'echo "no readable ovs-vswitchd.log (checked $OVS_LOGDIR and /var/log/openvswitch)"'
)


CPU_LOAD = ("nproc; cat /proc/loadavg; if [ -r /proc/pressure/cpu ]; then cat /proc/pressure/cpu; "
            "else echo 'no /proc/pressure/cpu (PSI off)'; fi")


def _clip(text: str) -> str:
    if len(text) <= SECTION_LIMIT:
        return text
    return f"[... {len(text) - SECTION_LIMIT} characters cut ...]\n" + text[-SECTION_LIMIT:]


def _shown(host: Host, result: CommandResult, out: str) -> str:
    """A command as run, what it printed (``out``), its stderr and a failed exit code."""
    text = f"$ {host.shown(result.command)}\n{out.rstrip()}"
    if result.stderr.strip():
        text += f"\n[stderr]\n{result.stderr.rstrip()}"
    if not result.ok:
        text += f"\n[exit {result.rc}]"
    return text


class _Collector:
    """Runs commands on hosts for diagnostics; remembers which hosts are unreachable."""

    def __init__(self, hosts: Mapping[str, Host], timeout: float) -> None:
        self.hosts = hosts
        self.timeout = timeout
        self.dead: dict[str, str] = {}
        self.sections: dict[str, str] = {}

    def host(self, role: str) -> Host | None:
        if role in self.dead:
            return None
        try:
            return self.hosts[role]
        except KeyError:
            self.dead[role] = "not in this lab"
        except Exception as exc:  # opening the connection failed
            self.dead[role] = f"{type(exc).__name__}: {exc}"
        return None

    def run(self, role: str, command: str | list[str], title: str, *, post: Callable[[str], str] | None = None) -> None:
        host = self.host(role)
        if host is None:
            self.sections[title] = f"(not collected: {role} unreachable: {self.dead.get(role)})"
            return
        try:
            result = host.run(command, timeout=self.timeout)
        except HostUnreachable as exc:
            self.dead[role] = str(exc)
            self.sections[title] = f"(not collected: {exc})"
            return
        except Exception as exc:  # a timeout or anything else: say it, go on
            self.sections[title] = f"(not collected: {type(exc).__name__}: {exc})"
            return
        out = result.stdout
        if post is not None:
            try:
                out = post(out)
            except Exception as exc:
                out = f"(could not post-process: {exc})\n{out}"
        self.sections[title] = _clip(_shown(host, result, out))

    def run_reads(self, role: str, reads: list[GuestRead], title: str) -> None:
        """Several JSON-or-text reads in one section, each summed up; the raw output when it does not parse."""
        parts: list[str] = []
        for json_cmd, text_cmd, summary in reads:
            host = self.host(role)
            if host is None:
                parts.append(f"(not collected: {role} unreachable: {self.dead.get(role)})")
                break
            try:
                result = run_json_or_text(host, json_cmd, text_cmd, timeout=self.timeout)
            except HostUnreachable as exc:
                self.dead[role] = str(exc)
                parts.append(f"(not collected: {exc})")
                break
            except Exception as exc:  # a timeout or anything else: say it, go on
                parts.append(f"$ {to_shell(json_cmd)}\n(not collected: {type(exc).__name__}: {exc})")
                continue
            try:
                body = "\n".join(summary(result.stdout)) if result.ok else result.stdout
            except ParseError as exc:
                body = f"(not understood: {exc})\n{result.stdout.rstrip()}"
            parts.append(_shown(host, result, body))
        self.sections[title] = _clip("\n\n".join(parts))


GuestRead = tuple[list[str], list[str], Callable[[str], list[str]]]  # JSON command, text command, summary


def guest_net_reads(iface: str) -> list[GuestRead]:
    """``ip -j`` link with counters, addresses and neighbours of a guest (text where its ip has no JSON), each
    summed up in a few lines: what a reader of a failed ping wants first."""
    return [
        (["ip", "-j", "-s", "link", "show", "dev", iface], ["ip", "-s", "link", "show", "dev", iface], _links),
        (["ip", "-j", "addr", "show", "dev", iface], ["ip", "addr", "show", "dev", iface], _addrs),
        (["ip", "-j", "neigh", "show"], ["ip", "neigh", "show"], _neighs),
    ]


def _links(text: str) -> list[str]:
    out = []
    for lk in parse_ip_link(text).links:
        line = f"{lk.name}: state {lk.state} mtu {lk.mtu} mac {lk.mac} flags {','.join(lk.flags)}"
        if lk.stats is not None:
            for side, c in (("rx", lk.stats.rx), ("tx", lk.stats.tx)):
                line += f"; {side} {c.get('packets')} packets {c.get('bytes')} bytes {c.get('errors')} errors " \
                        f"{c.get('dropped')} dropped"
        out.append(line)
    return out


def _addrs(text: str) -> list[str]:
    return [f"{lk.name}: " + (", ".join(f"{a.cidr} ({a.scope})" for a in lk.addresses) or "no address")
            for lk in parse_ip_addr(text).links] if text.strip() not in ("", "[]") else ["no address"]


def _neighs(text: str) -> list[str]:
    if text.strip() in ("", "[]"):
        return ["no neighbours"]
    return [f"{n.dst} dev {n.dev} lladdr {n.lladdr or '-'} {' '.join(n.states)}"
            for n in parse_ip_neigh(text).neighbours]


def _label_ovs_log(text: str) -> str:
    """Mark the seed's known-harmless IGMP flow-key errors so nobody chases them."""
    return "\n".join(
        f"{line}   <-- known harmless (IGMP flow key, see the seed)" if is_harmless_ovs_line(line) else line
        for line in text.splitlines()
    )


def _since(marker: LogMarker) -> Callable[[str], str]:
    def post(text: str) -> str:
        if marker.kind != "dmesg":
            return text
        try:
            kept = {r.line_no for r in records_after(parse_kernel_log(text).records, marker)}
        except Exception:  # unparsable: show it all rather than nothing
            return text
        return "\n".join(line for n, line in enumerate(text.splitlines(), start=1) if n in kept)
    return post


def format_history(history: CommandHistory, since: float | None = None, limit: int = HISTORY_LIMIT) -> str:
    """The host's command log (redacted), oldest first, last ``limit`` entries."""
    entries = history.entries(since)
    cut = len(entries) - limit
    lines = [f"[{cut} older entries not shown]"] if cut > 0 else []
    for e in entries[-limit:]:
        stamp = time.strftime("%H:%M:%S", time.localtime(e.started)) + f".{int(e.started % 1 * 1000):03d}"
        rc = "-" if e.rc is None else str(e.rc)
        lines.append(f"{stamp} {e.duration:7.3f}s rc={rc:>3} {e.outcome:<11} {e.command}")
    return "\n".join(lines) or "(no commands)"


def console_logs(lab: Lab, state_dir: Path | None) -> dict[str, str]:
    """Guest console logs the emulated lab keeps in its state dir (files named after the guest)."""
    out: dict[str, str] = {}
    if state_dir is None or not state_dir.is_dir():
        return out
    for guest in lab.guest:
        for path in sorted(state_dir.rglob(f"*{guest.name}*")):
            name = path.name.lower()
            if path.is_file() and ("console" in name or "serial" in name):
                try:
                    lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                except OSError as exc:
                    lines = [f"(unreadable: {exc})"]
                out[f"{guest.name}: console {path.name}"] = _clip("\n".join(lines))
    return out


#: where an emulated lab whose host is a VM keeps that VM's console (vdpa-vm flavour: ``STATE/vm/console.log``)
LAB_VM_CONSOLE = Path("vm") / "console.log"


def lab_host_console(lab: Lab, state_dir: Path | None) -> dict[str, str]:
    """The tail of the lab host's console when the emulated lab runs it as a VM: a lab host that stopped answering
    in the middle of a run may have panicked, and only its console says so."""
    path = None if state_dir is None else state_dir / LAB_VM_CONSOLE
    if path is None or not path.is_file():
        return {}
    try:
        lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError as exc:
        lines = [f"(unreadable: {exc})"]
    return {f"{lab.host.name}: lab VM console {LAB_VM_CONSOLE} (tail)": _clip("\n".join(lines))}


def collect_diagnostics(
    lab: Lab,
    hosts: Mapping[str, Host],
    since_marker: LogMarker | None,
    *,
    timeout: float = COMMAND_TIMEOUT,
    history_since: float | None = None,
    state_dir: Path | None = None,
) -> dict[str, str]:
    """Named text sections for a failed test's report. Never raises; bounded by per-command timeouts.

    ``hosts`` maps "host" and guest names to Hosts (a HostPool works). ``since_marker``
    bounds the kernel log (None: from the start of the current boot's log).
    ``history_since`` limits the command history to entries after that time
    (e.g. the test's start); ``state_dir`` is where an emulated lab keeps console logs.
    """
    c = _Collector(hosts, timeout)
    marker = since_marker or LogMarker.start("host")
    c.run("host", kernel_log_command(marker), f"host: kernel log since {marker.describe()}", post=_since(marker))
    c.run("host", OVS_LOG, "host: ovs-vswitchd.log (tail)", post=_label_ovs_log)
    # a loaded host explains latency outliers and UDP loss that the datapath did not cause (PSI: Linux >= 4.20)
    c.run("host", CPU_LOAD, "host: cpu load and pressure")
    c.run("host", ["ovs-vsctl", "show"], "host: ovs-vsctl show")
    c.run("host", ["ovs-appctl", "dpctl/dump-flows", "-m"], "host: ovs-appctl dpctl/dump-flows -m")
    for bridge in lab.bridge:
        c.run("host", ["ovs-ofctl", "--names", "-O", "OpenFlow14", "dump-ports", bridge.name],
              f"host: dump-ports {bridge.name}")
        c.run("host", ["ovs-ofctl", "--names", "-O", "OpenFlow14", "dump-flows", bridge.name],
              f"host: dump-flows {bridge.name}")
    for guest in lab.guest:
        c.run_reads(guest.name, guest_net_reads(guest.interface), f"{guest.name}: links, addresses, neighbours")
        for label, path in driver_for(guest).log_files():
            c.run("host", ["tail", "-n", str(LOG_TAIL_LINES), path], f"{guest.name}: {label}")
    try:
        c.sections.update(console_logs(lab, state_dir))
    except Exception as exc:
        c.sections["guest consoles"] = f"(not collected: {exc})"
    for role in ["host", *[g.name for g in lab.guest]]:
        host = _opened(hosts, role)  # the history is local: also shown for a host that died
        if host is not None:
            c.sections[f"{role}: command history"] = format_history(host.history, history_since)
    if "host" in c.dead:
        c.sections.update(lab_host_console(lab, state_dir))
    if c.dead:
        c.sections["unreachable hosts"] = "\n".join(f"{role}: {why}" for role, why in c.dead.items())
    return c.sections


def _opened(hosts: Mapping[str, Host], role: str) -> Host | None:
    """An already opened host (HostPool.opened), else the mapping's entry; never opens a new connection twice."""
    opened = getattr(hosts, "opened", None)
    if callable(opened):
        return opened().get(role)
    try:
        return hosts[role]
    except Exception:
        return None
