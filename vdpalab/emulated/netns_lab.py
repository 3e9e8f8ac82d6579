"""The emulated lab's "hardware": network namespaces, veth cables, a private OVS and sshd daemons.

The line is drawn where a real host's hardware and base system end. ``EmulatedLab.up``
builds what the seed's procedure finds already there before its first step:

* a host namespace (the seed's c83g155) running its own sshd and its own Open vSwitch,
  reached over SSH at 127.0.0.1:22 *inside* that namespace (its loopback is the management
  network, which never crosses an OVS bridge, so port counters count only test traffic);
* the "PFs" ``ens2f0`` and ``ens2f1``: the two ends of one veth pair, the DAC loop cable;
* the "representors" ``ens2f0_0`` / ``ens2f1_0``: veths in the host namespace whose peers are
  ``eth0`` inside one namespace per guest, each guest running its own sshd;
* every link up, ``lo`` up, tx checksum offload off on every veth end and IPv6 off on the host's
  ends (NIC properties: OVS's userspace datapath would forward partial checksums, and a DPDK-owned
  port has no kernel stack sending DAD/RS/MLD frames into the bridges);
* the SSH client key, the host key and known_hosts in the lab's state directory.

Everything the procedure configures (hugepages, bridges and ports, other_config, guest MAC and
addresses) is left to the bring-up layers, over SSH, exactly as on hardware.

All names carry the lab's prefix (``<emulated.prefix>-<lab.name>-``) and the record of what
was created lives in the state directory, so two labs can run side by side and ``down``
removes exactly what this lab created, also after a crash.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from filelock import FileLock
from pyroute2 import IPRoute, NetlinkError
from pyroute2 import netns as pr_netns

from vdpalab.config import Lab
from vdpalab.emulated import ethtool
from vdpalab.emulated.daemons import (
    kill_and_wait,
    netns_inode,
    pid_is_ours,
    pids_in_netns,
    read_pidfile,
    stop_ours,
)
from vdpalab.emulated.ovs import OvsDirs, PrivateOvs
from vdpalab.emulated.sshd import known_hosts_name, pin_host_keys, start_sshd
from vdpalab.errors import LabStateError
from vdpalab.hosts.netns import call_in_netns, connect_tcp
from vdpalab.logs import seconds

HOST_ROLE = "host"
RECORD = "lab.json"
REQUIRED_TOOLS = ("ip", "ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ssh-keygen")
SSHD_BINARY = "/usr/sbin/sshd"
IFF_UP = 0x1
NETLINK_ROUTE = 0
NETNS_RUN_DIR = "/run/netns"  # where named namespaces are bind-mounted (/var/run is a link to /run)
# Machine-wide note of /run/netns as the first lab found it: lab A's first namespace makes it a mount,
# lab B then finds it mounted; whichever lab goes down last must still undo it, so the state before any
# lab is kept in one place for all labs (and removed with the mount).
RUN_NETNS_NOTE = Path("/run/vdpalab-netns-mount.json")

log = logging.getLogger(__name__)

# sshd processes started by this process (any EmulatedLab instance): polled after a down so that
# none stays a zombie of ours for the rest of a long test session
_CHILDREN: list[subprocess.Popen[bytes]] = []


# ---- the layout: every name, path and link the lab owns, derived from lab.toml ------------------


@dataclass(frozen=True)
class Veth:
    """One veth pair: a "cable" between two PFs, or a representor and its guest's interface."""

    name: str
    netns: str
    peer: str
    peer_netns: str
    why: str


@dataclass(frozen=True)
class SshdSpec:
    """One sshd: where it listens and what each session's environment gets (SetEnv)."""

    role: str  # "host" or a guest name
    netns: str
    address: str
    port: int
    set_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    """What one emulated lab consists of; pure data, computed from the lab file."""

    name: str
    prefix: str  # "vdpalab-emu": every namespace is "<prefix>-<something>"
    state_dir: Path
    host_netns: str
    guest_netns: dict[str, str]
    veths: tuple[Veth, ...]
    sshds: tuple[SshdSpec, ...]
    client_key: Path
    host_key: Path
    known_hosts: Path
    ovs: OvsDirs
    mtu: int = 9000  # every veth end is created with it: the emulated "NIC ports and cables" carry jumbo frames

    @property
    def namespaces(self) -> list[str]:
        return [self.host_netns, *self.guest_netns.values()]

    @property
    def marker(self) -> str:
        """What every daemon's command line contains: the state dir, with a trailing slash
        so that ``.state/emu`` does not also match ``.state/emu-b``."""
        return f"{self.state_dir}/"

    def sshd_dir(self, role: str) -> Path:
        return self.state_dir / "sshd" / role

    @property
    def datapath_ports(self) -> list[str]:
        """The veth ends in the host namespace: the "PFs" and "representors" OVS owns."""
        return self.links_in(self.host_netns)

    def links_in(self, netns: str) -> list[str]:
        names = [v.name for v in self.veths if v.netns == netns]
        names += [v.peer for v in self.veths if v.peer_netns == netns]
        return names


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def lab_layout(lab: Lab) -> Layout:
    """Derive (and check) every name the lab will create; raises LabStateError on a lab it cannot build."""
    if lab.lab.kind != "emulated" or lab.emulated is None:
        raise LabStateError(f"lab {lab.lab.name!r} is a {lab.lab.kind} lab: only emulated labs are built")
    if lab.emulated.flavour != "netns":
        raise LabStateError(f"lab {lab.lab.name!r}: the netns builder does not build flavour {lab.emulated.flavour!r}")
    prefix = f"{lab.emulated.prefix}-{lab.lab.name}"
    state_dir = lab.resolve(lab.emulated.state_dir)
    assert state_dir is not None
    state_dir = Path(os.path.abspath(state_dir))
    host_netns = lab.emulated.host_netns or lab.host.netns or f"{prefix}-host"
    if lab.host.netns and lab.host.netns != host_netns:
        raise LabStateError(f"host.netns {lab.host.netns!r} differs from emulated.host_netns {host_netns!r}")
    if not lab.host.netns:
        raise LabStateError(f"host.netns must name the host namespace ({host_netns!r}): the suite reaches it over SSH")

    guest_netns: dict[str, str] = {}
    veths: list[Veth] = []
    sshds: list[SshdSpec] = []
    pfs = [pf.name for pf in lab.pf]
    if len(pfs) % 2:
        raise LabStateError(f"the emulated PFs are the two ends of a loop cable: {len(pfs)} PFs cannot be paired")
    for a, b in zip(pfs[::2], pfs[1::2], strict=True):
        veths.append(Veth(a, host_netns, b, host_netns, f"DAC loop cable {a} == {b}"))

    representors = lab.representor_names
    for guest in lab.guest:
        if guest.kind != "netns":
            raise LabStateError(f"guest {guest.name!r} is a {guest.kind} guest: the netns builder runs netns guests")
        if not guest.representor:
            raise LabStateError(f"guest {guest.name!r} needs a representor (the veth its eth0 is plugged into)")
        if guest.representor not in representors:
            raise LabStateError(f"guest {guest.name!r}: {guest.representor!r} is not a declared representor")
        ns = guest.ssh.netns or f"{prefix}-{guest.name}"
        guest_netns[guest.name] = ns
        veths.append(Veth(guest.representor, host_netns, guest.interface, ns, f"representor of {guest.name}"))
        sshds.append(SshdSpec(guest.name, ns, guest.ssh.address, guest.ssh.port))

    names = [host_netns, *guest_netns.values()]
    for ns in names:
        if not ns.startswith(prefix + "-"):
            raise LabStateError(f"namespace {ns!r} does not carry the lab's prefix {prefix + '-'!r}")
    if len(set(names)) != len(names):
        raise LabStateError(f"namespaces must be distinct: {names}")
    ends = [(v.netns, v.name) for v in veths] + [(v.peer_netns, v.peer) for v in veths]
    if len(set(ends)) != len(ends):
        raise LabStateError(f"a link name is used twice in one namespace: {sorted(ends)}")

    def one_path(kind: str, values: list[str | None], default: str) -> Path:
        paths = {os.path.abspath(p) for p in (lab.resolve(v) for v in values if v) if p is not None}
        if len(paths) > 1:
            raise LabStateError(f"host and guests must share one {kind} in an emulated lab, got {sorted(paths)}")
        path = Path(paths.pop()) if paths else state_dir / default
        if not _under(path, state_dir):
            raise LabStateError(f"{kind} {path} must be inside the lab's state dir {state_dir}")
        return path

    settings = [lab.host.model_dump(), *(g.ssh.model_dump() for g in lab.guest)]
    client_key = one_path("key_file", [s["key_file"] for s in settings], "id_ed25519")
    known_hosts = one_path("known_hosts", [s["known_hosts"] for s in settings], "known_hosts")

    ovs = OvsDirs(run=state_dir / "run", db=state_dir / "db", log=state_dir / "log")
    sshds.insert(0, SshdSpec(HOST_ROLE, host_netns, lab.host.address, lab.host.port, ovs.env()))
    for spec in sshds:
        if spec.address not in ("127.0.0.1", "::1", "localhost"):
            raise LabStateError(
                f"{spec.role}: ssh address {spec.address!r}: the emulated lab's sshd listens on the namespace's "
                "loopback (127.0.0.1)"
            )
    return Layout(
        name=lab.lab.name,
        prefix=prefix,
        state_dir=state_dir,
        host_netns=host_netns,
        guest_netns=guest_netns,
        veths=tuple(veths),
        sshds=tuple(sshds),
        client_key=client_key,
        host_key=state_dir / "ssh_host_ed25519_key",
        known_hosts=known_hosts,
        ovs=ovs,
        mtu=lab.emulated.datapath_mtu,
    )


# ---- probe results -----------------------------------------------------------------------------


@dataclass
class Probe:
    """What the lab looks like now; ``ok`` when everything the builder owns is in place."""

    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def absent(self) -> bool:
        """Nothing of the lab exists (no namespace, no daemon)."""
        return not any(self.facts.get("netns", {}).values()) and not any(self.facts.get("daemons", {}).values())


@dataclass
class BuildReport:
    """What ``up`` did: empty ``changed`` means it found the lab up and only probed."""

    changed: list[str] = field(default_factory=list)
    probe: Probe | None = None
    duration_s: float = 0.0


# ---- the builder -------------------------------------------------------------------------------


class EmulatedLab:
    """Build, probe and remove one emulated netns lab (root only): a ``vdpalab.infra.Infrastructure``."""

    provides_guests = True  # the guests' namespaces and sshd are infrastructure

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.layout = lab_layout(lab)
        self.ovs = PrivateOvs(self.layout.host_netns, self.layout.ovs, self.layout.marker)
        self._lock: FileLock | None = None

    # -- locking: xdist workers and a CLI may act on the same lab at once --

    @contextmanager
    def lock(self, timeout: float = 300.0) -> Iterator[None]:
        """An exclusive lock on this lab (re-entrant within one EmulatedLab)."""
        if self._lock is None:
            self.layout.state_dir.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(str(self.layout.state_dir / ".lab.lock"), timeout=timeout)
        with self._lock:
            yield

    # -- probe --

    def probe(self) -> Probe:
        """Read-only check of everything the builder owns (namespaces, links, daemons, keys)."""
        t0 = time.monotonic()
        lay = self.layout
        probe = Probe()
        present = {ns: netns_inode(ns) is not None for ns in lay.namespaces}
        probe.facts["netns"] = present
        probe.problems += [f"namespace {ns} is missing" for ns, ok in present.items() if not ok]
        links: dict[str, dict[str, Any]] = {}
        for ns in lay.namespaces:
            if present[ns]:
                links[ns] = _links_of(ns)
        probe.facts["links"] = links
        for veth in lay.veths:
            probe.problems += _veth_problems(veth, links)
        for ns, table in links.items():
            lo = table.get("lo")
            if lo is None or not lo["up"]:
                probe.problems.append(f"{ns}: lo is not up")
        for ns in lay.namespaces:
            wanted = [name for name in lay.links_in(ns) if name in links.get(ns, {})]
            if wanted:
                on = [name for name, value in ethtool.tx_checksum(ns, wanted).items() if value]
                probe.problems += [f"{ns}: {name} has tx checksum offload on" for name in on]
        if present.get(lay.host_netns):
            on = _ipv6_on(lay.host_netns, [p for p in lay.datapath_ports if p in links.get(lay.host_netns, {})])
            probe.problems += [f"{lay.host_netns}: {name} has IPv6 on" for name in on]
        daemons: dict[str, int | None] = dict(self.ovs.running())
        for spec in lay.sshds:
            daemons[f"sshd:{spec.role}"] = self._sshd_pid(spec.role)
        probe.facts["daemons"] = daemons
        probe.problems += [f"{name} is not running" for name, pid in daemons.items() if pid is None]
        for spec in lay.sshds:
            if daemons.get(f"sshd:{spec.role}") and present.get(spec.netns):
                try:
                    connect_tcp(spec.address, spec.port, 1.0, netns=spec.netns).close()
                except OSError as exc:
                    probe.problems.append(f"sshd:{spec.role} does not accept connections: {exc}")
        for path in (lay.client_key, lay.host_key, lay.known_hosts):
            if not path.exists():
                probe.problems.append(f"{path} is missing")
        probe.duration_s = time.monotonic() - t0
        return probe

    def status(self) -> dict[str, Any]:
        """The probe plus where things live, for ``vdpalab lab status``."""
        probe = self.probe()
        return {
            "lab": self.layout.name,
            "up": probe.ok,
            "state": "up" if probe.ok else ("down" if probe.absent else "partial"),
            "problems": probe.problems,
            "namespaces": probe.facts.get("netns", {}),
            "daemons": probe.facts.get("daemons", {}),
            "state_dir": str(self.layout.state_dir),
            "ovs_env": self.layout.ovs.env(),
            "probe_s": round(probe.duration_s, 4),
        }

    # -- up --

    def up(self) -> BuildReport:
        """Build what is missing; on a lab that is already up this only probes."""
        t0 = time.monotonic()
        _preflight()
        with self.lock():
            probe = self.probe()
            report = BuildReport(probe=probe)
            if probe.ok:
                report.duration_s = time.monotonic() - t0
                return report
            log.info("emulated lab %s: building (%d things missing)", self.layout.name, len(probe.problems))
            for problem in probe.problems:
                log.debug("emulated lab %s: missing: %s", self.layout.name, problem)
            try:
                self._write_record()
                report.changed += self._ensure_keys()
                report.changed += self._ensure_namespaces()
                report.changed += self._ensure_links()
                report.changed += [f"started {d}" for d in self.ovs.start()]
                report.changed += self._ensure_sshds()
                after = self.probe()
                if not after.ok:
                    raise LabStateError(f"emulated lab {self.layout.name} is not up after building: {after.problems}")
            except (LabStateError, OSError, subprocess.SubprocessError) as exc:
                # a lab built from nothing is removed again; a repaired one is left for `down` (and a look)
                note = ""
                if probe.absent:
                    self.down()
                    note = " (what was built has been removed again)"
                if isinstance(exc, LabStateError):
                    raise LabStateError(f"{exc}{note}")
                raise LabStateError(
                    f"emulated lab {self.layout.name}: build failed: {type(exc).__name__}: {exc}{note}"
                )
            report.probe = after
        report.duration_s = time.monotonic() - t0
        log.info("emulated lab %s: infrastructure built in %s (%d changes)", self.layout.name,
                 seconds(report.duration_s), len(report.changed))
        for change in report.changed:
            log.debug("emulated lab %s: %s", self.layout.name, change)
        return report

    def _write_record(self) -> None:
        """Written before anything is created, so ``down`` after a crash knows every name."""
        path = self.layout.state_dir / RECORD
        record = _read_record(path)
        known = set(record.get("namespaces", []))
        record = {
            "lab": self.layout.name,
            "source": self.lab.source,
            "prefix": self.layout.prefix,
            "namespaces": sorted(known | set(self.layout.namespaces)),
            "created": record.get("created", time.time()),
            # creating the first namespace makes /run/netns a shared bind mount (as `ip netns add` does):
            # remembered so that down can undo it on a machine where it was not there before
            "run_netns": record.get("run_netns") or note_run_netns(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(path)

    def _ensure_keys(self) -> list[str]:
        lay = self.layout
        changed: list[str] = []
        lay.state_dir.mkdir(parents=True, exist_ok=True)
        for path, comment in ((lay.client_key, "client"), (lay.host_key, "host")):
            if path.exists() and _pub(path).exists():
                continue
            path.unlink(missing_ok=True)
            _pub(path).unlink(missing_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"vdpalab-{lay.name}-{comment}", "-f", str(path)],
                check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
            )
            changed.append(f"generated {path.name}")
        host_pub = " ".join(_pub(lay.host_key).read_text().split()[:2])
        text = pin_host_keys("", {known_hosts_name(spec.address, spec.port): host_pub for spec in lay.sshds})
        if not lay.known_hosts.exists() or lay.known_hosts.read_text() != text:
            lay.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            lay.known_hosts.write_text(text)
            changed.append(f"wrote {lay.known_hosts.name}")
        return changed

    def _ensure_namespaces(self) -> list[str]:
        changed: list[str] = []
        for ns in self.layout.namespaces:
            if netns_inode(ns) is None:
                pr_netns.create(ns)
                changed.append(f"created namespace {ns}")
            with ipr_in(ns) as ipr:
                lo = ipr.link_lookup(ifname="lo")[0]
                ipr.link("set", index=lo, state="up")
        return changed

    def _ensure_links(self) -> list[str]:
        lay = self.layout
        changed: list[str] = []
        links = {ns: _links_of(ns) for ns in lay.namespaces}
        for veth in lay.veths:
            if _veth_problems(veth, links):
                # an end is missing or paired elsewhere (half-built): remove what is there, create the pair anew
                for ns, name in ((veth.netns, veth.name), (veth.peer_netns, veth.peer)):
                    if name in links[ns]:
                        with ipr_in(ns) as ipr:
                            try:
                                ipr.link("del", index=links[ns][name]["index"])
                            except NetlinkError as exc:  # deleting one end of a pair already removed the other
                                if exc.code != errno.ENODEV:
                                    raise
                with ipr_in(veth.netns) as ipr:
                    peer: dict[str, Any] = {"ifname": veth.peer}
                    if veth.peer_netns != veth.netns:
                        peer["net_ns_fd"] = veth.peer_netns
                    ipr.link("add", ifname=veth.name, kind="veth", peer=peer)
                changed.append(f"created veth {veth.name}@{veth.netns} == {veth.peer}@{veth.peer_netns} ({veth.why})")
                for ns in {veth.netns, veth.peer_netns}:
                    links[ns] = _links_of(ns)
        # the host's ends are datapath ports (on hardware: DPDK-owned, no kernel IP stack): without IPv6 their
        # kernel sends no DAD/RS/MLD frames into the bridges, which would skew the port counters
        changed += [f"{lay.host_netns}: IPv6 off on {name}" for name in _ipv6_off(lay.host_netns, lay.datapath_ports)]
        for ns in lay.namespaces:
            names = lay.links_in(ns)
            if not names:
                continue
            off = ethtool.disable_tx_checksum(ns, names)  # before the link goes up: no frame leaves with it on
            changed += [f"{ns}: tx checksum offload off on {name}" for name in off]
            with ipr_in(ns) as ipr:
                for name in names:
                    link = links[ns][name]
                    if not link["up"]:  # a new end: the cable's MTU first (a guest's own MTU is its layer's job)
                        if link.get("mtu") != lay.mtu:
                            ipr.link("set", index=link["index"], mtu=lay.mtu)
                            changed.append(f"{ns}: mtu {lay.mtu} on {name}")
                        ipr.link("set", index=link["index"], state="up")
        return changed

    # -- sshd --

    def _sshd_pid(self, role: str) -> int | None:
        pid = read_pidfile(self.layout.sshd_dir(role) / "sshd.pid")
        return pid if pid_is_ours(pid, self.layout.marker) else None

    def _ensure_sshds(self) -> list[str]:
        lay = self.layout
        changed: list[str] = []
        for spec in lay.sshds:
            if self._sshd_pid(spec.role) is not None:
                continue
            work = lay.sshd_dir(spec.role)
            work.mkdir(parents=True, exist_ok=True)
            # the lab's keys, under the names start_sshd looks for (it generates only what is missing)
            for src, dst in (
                (lay.host_key, work / "ssh_host_ed25519_key"),
                (_pub(lay.host_key), work / "ssh_host_ed25519_key.pub"),
                (lay.client_key, work / "client_ed25519"),
                (_pub(lay.client_key), work / "client_ed25519.pub"),
            ):
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o600)
            if spec.role == HOST_ROLE:
                # the host's sshd shares the machine's mount namespace, as on a real host: a mount made
                # over SSH (the hugepages layer's hugetlbfs) is a real mount, survives an sshd restart
                # and is seen by the snapshot. Started from a thread that joined the namespace (the
                # child inherits the thread's netns); HOME points at an empty directory instead of a
                # bind mount, so bash does not source /root/.bashrc.
                home = lay.state_dir / "home"
                home.mkdir(mode=0o700, exist_ok=True)
                env = {**spec.set_env, "HOME": str(home)}
                server = call_in_netns(
                    spec.netns,
                    partial(start_sshd, work, netns=None, address=spec.address, port=spec.port, set_env=env,
                            clean_home=False),
                    timeout=60.0,
                )
            else:
                # a guest's sshd: `ip netns exec` (its /sys shows the guest's links), a clean home bind-mounted
                # in its private mount namespace
                server = start_sshd(work, netns=spec.netns, address=spec.address, port=spec.port, clean_home=True)
            if server.proc is not None:
                _CHILDREN.append(server.proc)
            changed.append(f"started sshd:{spec.role} in {spec.netns} (pid {server.pid})")
        return changed

    # -- down --

    def down(self) -> list[str]:
        """Remove everything this lab created (also a half-built lab); a no-op on a lab that is down."""
        lay = self.layout
        removed: list[str] = []
        with self.lock():
            record = _read_record(lay.state_dir / RECORD)
            namespaces = list(dict.fromkeys([*lay.namespaces, *record.get("namespaces", [])]))
            namespaces = [ns for ns in namespaces if ns.startswith(lay.prefix + "-")]
            for spec in lay.sshds:
                pidfile = lay.sshd_dir(spec.role) / "sshd.pid"
                if stop_ours(read_pidfile(pidfile), lay.marker):
                    removed.append(f"stopped sshd:{spec.role}")
                pidfile.unlink(missing_ok=True)
            removed += [f"stopped {d}" for d in self.ovs.stop()]
            # whatever still runs inside the lab's namespaces was started through its sshd (per-session
            # sshd, iperf3 servers left by a test): nothing else can be in a namespace the lab created
            inodes = {ino for ino in (netns_inode(ns) for ns in namespaces) if ino is not None}
            leftovers = pids_in_netns(inodes)
            if leftovers:
                kill_and_wait(leftovers)
                removed.append(f"killed {len(leftovers)} leftover process(es) in the lab's namespaces")
            for ns in namespaces:
                if netns_inode(ns) is not None:
                    pr_netns.remove(ns)
                    removed.append(f"removed namespace {ns}")
            removed += restore_run_netns(record.get("run_netns"))
            removed += _unmount_under(lay.state_dir)
            self.ovs.remove_state()
            (lay.state_dir / RECORD).unlink(missing_ok=True)
            self._reap()
        return removed

    @staticmethod
    def _reap() -> None:
        """Collect the exit status of the sshd processes this process started (no zombies of ours)."""
        for proc in list(_CHILDREN):
            if proc.poll() is not None:
                _CHILDREN.remove(proc)


# ---- helpers --------------------------------------------------------------------------------------


def _preflight() -> None:
    if os.geteuid() != 0:
        raise LabStateError("the emulated lab needs root (network namespaces, veths, sshd)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if not os.path.exists(SSHD_BINARY):
        missing.append(SSHD_BINARY)
    if missing:
        raise LabStateError(
            f"the emulated lab needs {', '.join(missing)} (openvswitch-switch, openssh-server, iproute2)"
        )


def _ipv6_path(name: str) -> str:
    return f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"


def _ipv6_on(netns: str, names: list[str]) -> list[str]:
    """The interfaces of ``netns`` with IPv6 enabled (/proc/sys/net follows the reading thread's namespace)."""

    def read() -> list[str]:
        return [n for n in names if Path(_ipv6_path(n)).read_text().strip() == "0"]

    return call_in_netns(netns, read, timeout=10.0) if names else []


def _ipv6_off(netns: str, names: list[str]) -> list[str]:
    """Disable IPv6 on interfaces of ``netns``; returns those that had it on."""

    def write() -> list[str]:
        changed = []
        for name in names:
            path = Path(_ipv6_path(name))
            if path.read_text().strip() == "0":
                path.write_text("1")
                changed.append(name)
        return changed

    return call_in_netns(netns, write, timeout=10.0) if names else []


def _pub(key: Path) -> Path:
    """ssh-keygen's public half: KEY.pub (also for a key whose name has a dot)."""
    return key.parent / f"{key.name}.pub"


def _read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def ipr_in(netns: str) -> IPRoute:
    """An IPRoute whose netlink socket lives in ``netns``.

    The socket is created by a thread that joined the namespace (setns), which costs well under a
    millisecond; ``IPRoute(netns=...)`` forks a helper process for it (20-40 ms each).
    """

    def make() -> int:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE).detach()

    return IPRoute(fileno=call_in_netns(netns, make, timeout=10.0))


def _links_of(netns: str) -> dict[str, dict[str, Any]]:
    """name -> {index, kind, up, link (peer ifindex)} for every link of a namespace."""
    table: dict[str, dict[str, Any]] = {}
    with ipr_in(netns) as ipr:
        for msg in ipr.get_links():
            info = msg.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            table[msg.get_attr("IFLA_IFNAME")] = {
                "index": msg["index"],
                "kind": kind,
                "up": bool(msg["flags"] & IFF_UP),
                "link": msg.get_attr("IFLA_LINK"),
                "mtu": msg.get_attr("IFLA_MTU"),
            }
    return table


def _veth_problems(veth: Veth, links: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    a = links.get(veth.netns, {}).get(veth.name)
    b = links.get(veth.peer_netns, {}).get(veth.peer)
    where = f"veth {veth.name}@{veth.netns} == {veth.peer}@{veth.peer_netns}"
    if a is None or b is None:
        return [f"{where} is missing"]
    problems = []
    if a["kind"] != "veth" or b["kind"] != "veth":
        problems.append(f"{where}: not a veth pair ({a['kind']}, {b['kind']})")
    elif a["link"] != b["index"] or b["link"] != a["index"]:
        problems.append(f"{where}: the two ends are not peers")
    problems += [f"{where}: {name} is down" for name, end in ((veth.name, a), (veth.peer, b)) if not end["up"]]
    return problems


def _mountpoints() -> list[str]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    return [line.split()[4].encode().decode("unicode_escape") for line in lines if len(line.split()) > 4]


def run_netns_state() -> dict[str, bool]:
    """Whether /run/netns exists and is a mount point (`ip netns add` makes it one, `ip netns del` never undoes it)."""
    return {"existed": os.path.isdir(NETNS_RUN_DIR), "mounted": NETNS_RUN_DIR in _mountpoints()}


def note_run_netns() -> dict[str, bool]:
    """The state of /run/netns now; when no lab has mounted it yet, also noted machine-wide."""
    state = run_netns_state()
    if not state["mounted"] and not RUN_NETNS_NOTE.exists():
        RUN_NETNS_NOTE.write_text(json.dumps(state))
    return state


def restore_run_netns(before: dict[str, bool] | None) -> list[str]:
    """Undo the /run/netns mount (and directory) a lab's first namespace made, once nobody uses it.

    The machine-wide note wins over the lab's own record: a lab that came up second found the
    mount made by the first, yet may be the last to go down.
    """
    try:
        noted = json.loads(RUN_NETNS_NOTE.read_text())
        before = noted if isinstance(noted, dict) else before
    except (OSError, ValueError):
        pass
    if not before or before.get("mounted", True) or _namespaces_live():
        return []  # mounted before us, or namespaces still live there (another lab's, or someone else's)
    done = []
    while NETNS_RUN_DIR in _mountpoints():
        if subprocess.run(["umount", NETNS_RUN_DIR], capture_output=True, timeout=10).returncode != 0:
            break
        done.append(f"unmounted {NETNS_RUN_DIR} (made a mount point by the first namespace)")
    if not before.get("existed", True):
        try:
            os.rmdir(NETNS_RUN_DIR)
            done.append(f"removed {NETNS_RUN_DIR}")
        except OSError:
            pass
    if NETNS_RUN_DIR not in _mountpoints():
        RUN_NETNS_NOTE.unlink(missing_ok=True)
    return done


def run_netns_left_mounted(before: dict[str, bool]) -> bool:
    """Whether /run/netns is mounted now although it was not ``before`` and no namespace lives there (a lab's
    namespaces that came up meanwhile keep it mounted by right): the leak a sandbox's own ``ip netns add`` makes."""
    return not before.get("mounted", True) and not _namespaces_live() and run_netns_state()["mounted"]


def _namespaces_live() -> bool:
    try:
        return bool(os.listdir(NETNS_RUN_DIR))
    except OSError:
        return False


def _unmount_under(root: Path) -> list[str]:
    """Lazily unmount anything still mounted under the state dir (a layer's mount left by a crash)."""
    prefix = f"{root}/"
    mountpoints = [point for point in _mountpoints() if point.startswith(prefix)]
    done = []
    for point in sorted(mountpoints, key=len, reverse=True):
        proc = subprocess.run(["umount", "-l", point], capture_output=True, text=True, timeout=10)
        if proc.returncode == 0:
            done.append(f"unmounted {point} (left by a layer)")
    return done
