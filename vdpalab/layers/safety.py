"""Refuse to touch a NIC port that is not the one lab.toml means, or that keeps the host reachable.

Two mistakes can take a production host off the network during bring-up:

* the interface names in lab.toml point at another port than the PCI addresses do (after a
  NIC swap or a renaming udev rule): every change would hit the wrong port;
* a PF whose eswitch mode is changed carries the management path (the default route or the
  address this SSH session came in on): switching modes re-creates its netdev and drops it.

``check_safety`` is run by the preflight layer, which every changing layer requires, so a
refusal stops the bring-up before anything changed. It raises ``SafetyRefusal`` naming the PF.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vdpalab.config import Lab
from vdpalab.errors import LayerError, SafetyRefusal
from vdpalab.hosts.base import CommandResult
from vdpalab.layers import _text
from vdpalab.parsers.ethtool import EthtoolInfo, parse_ethtool_i

Runner = Callable[..., CommandResult]


@dataclass
class SafetyReport:
    """What the checks saw, for preflight's evidence."""

    bus_info: dict[str, str | None] = field(default_factory=dict)  # PF name -> ethtool -i bus-info
    drivers: dict[str, EthtoolInfo] = field(default_factory=dict)  # PF name -> ethtool -i
    default_route_devs: list[str] = field(default_factory=list)
    ssh_server_address: str | None = None
    ssh_devs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_pf_identity(lab: Lab, run: Runner, report: SafetyReport) -> None:
    """Each hardware PF's netdev must sit at the PCI address lab.toml gives (``ethtool -i NAME`` bus-info)."""
    for pf in lab.pf:
        if pf.pci is None:  # an emulated "PF" (a veth): nothing to match
            continue
        result = run(["ethtool", "-i", pf.name])
        if not result.ok:
            detail = (result.stderr.strip() or result.stdout.strip())[:200]
            raise SafetyRefusal(
                "preflight",
                f"PF {pf.name}: cannot confirm it is PCI {pf.pci}: `ethtool -i {pf.name}` failed "
                f"(rc={result.rc}: {detail}); refusing to touch it",
            )
        info = parse_ethtool_i(result.stdout)
        report.drivers[pf.name] = info
        bus = info.bus_info
        report.bus_info[pf.name] = bus
        if (bus or "").lower() != pf.pci:
            raise SafetyRefusal(
                "preflight",
                f"PF {pf.name}: lab.toml says pci {pf.pci} but `ethtool -i {pf.name}` reports bus-info "
                f"{bus or '(none)'}; refusing to touch a port that may not be the one meant "
                "(fix pf.name or pf.pci in the lab file)",
            )


def _ifaces_with_address(addr_json: object, address: str) -> list[str]:
    out = []
    for link in addr_json if isinstance(addr_json, list) else []:
        for info in link.get("addr_info", []) if isinstance(link, dict) else []:
            if info.get("local") == address:
                out.append(str(link.get("ifname")))
    return out


def ssh_session_addresses(run: Runner, port: int, env_reliable: bool) -> tuple[list[str], str]:
    """The server-side addresses of SSH sessions, and how they were found.

    ``$SSH_CONNECTION`` names this session's server address. When every command goes through
    ``sudo`` (``host.sudo = true`` with a non-root user), sudo resets the environment and the
    variable is gone; then ``ss`` lists the local address of every established session on the SSH
    port instead (a stricter check: it protects other operators' sessions too).
    """
    words = run("echo $SSH_CONNECTION", sudo=False).stdout.split()
    if len(words) == 4:
        return [words[2]], "SSH_CONNECTION"
    if env_reliable:
        return [], ""
    listing = run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"]).stdout
    found = []
    for line in listing.splitlines():
        cols = line.split()
        if len(cols) >= 4:
            local = cols[2].rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:")
            if local not in found:
                found.append(local)
    return found, "ss"


def check_management(lab: Lab, run: Runner, report: SafetyReport, *, env_reliable: bool = True) -> None:
    """Refuse when a PF whose eswitch mode bring-up changes carries the default route or an SSH session."""
    guarded = [pf.name for pf in lab.pf if pf.switchdev]
    if not guarded:
        return
    routes = _text.json_or_none(run(["ip", "-j", "route", "show", "default"]).stdout) or []
    report.default_route_devs = sorted({str(r.get("dev")) for r in routes if isinstance(r, dict) and r.get("dev")})
    addresses, how = ssh_session_addresses(run, lab.host.port, env_reliable)
    if addresses:
        report.ssh_server_address = ", ".join(addresses)
        addrs = _text.json_or_none(run(["ip", "-j", "addr", "show"]).stdout)
        if addrs is None:
            raise LayerError("preflight", "cannot read `ip -j addr show` to find the SSH session's interface")
        report.ssh_devs = sorted({dev for a in addresses for dev in _ifaces_with_address(addrs, a)})
        if how == "ss":
            report.notes.append(f"SSH sessions found with ss (sudo hides SSH_CONNECTION): {report.ssh_server_address}")
    else:
        report.notes.append("no SSH_CONNECTION: not logged in over SSH, no session address to protect")
    problems = []
    for name in guarded:
        if name in report.default_route_devs:
            problems.append((name, "it carries the host's default route (`ip -j route show default`)"))
        if name in report.ssh_devs:
            problems.append((name, f"it carries {report.ssh_server_address}, the address this SSH session came in on"))
    for name, why in problems:
        if lab.host.allow_management_pf:
            report.notes.append(f"PF {name}: {why}; allowed by lab.host.allow_management_pf = true")
        else:
            raise SafetyRefusal(
                "preflight",
                f"PF {name}: refusing to change its eswitch mode: {why}; switching to switchdev re-creates its "
                "netdev and would cut the host off (set host.allow_management_pf = true only with console access)",
            )


def check_safety(lab: Lab, run: Runner, *, env_reliable: bool = True) -> SafetyReport:
    """Both checks, in order; returns what they saw (raises SafetyRefusal on a refusal).

    ``env_reliable=False`` says every command runs under sudo, so ``$SSH_CONNECTION`` cannot be read.
    """
    report = SafetyReport()
    check_pf_identity(lab, run, report)
    check_management(lab, run, report, env_reliable=env_reliable)
    return report
