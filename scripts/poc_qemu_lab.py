#!/usr/bin/env python3
"""Proof of concept: two real QEMU guests pinging and iperf3-ing each other through OVS-DPDK vhost-user.

Builds the seed's bridge shape inside a network namespace of its own::

    guest c77g153 --vhost-user-- ens2f0_0 [br30-ovs] ens2f0 (af_packet) == veth "DAC cable" ==
        ens2f1 (af_packet) [br31-ovs] ens2f1_0 --vhost-user-- guest c77g159

then SSHes into both guests over loopback port forwards (QEMU user networking, ``restrict=on``), runs
``ping -f -c 2000`` and ``iperf3 -t 3``, prints ``ovs-ofctl -O OpenFlow14 dump-ports`` of both bridges, tears
everything down (also on failure) and checks that the machine equals the machine before.

Run as root from the repository root: ``.venv/bin/python scripts/poc_qemu_lab.py [--cold] [--no-huge]``.
``--down`` only removes what an interrupted earlier run left (it reads the state dir's pidfiles and journal).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paramiko  # noqa: E402

from vdpalab.emulated.dpdk import (  # noqa: E402
    DPDK_RUNTIME_ROOT,
    HugepageLease,
    cleanup_dpdk_runtime,
    dpdk_runtime_dir,
    find_vswitchd_dpdk,
    missing_dpdk_drivers,
    mounts_at,
    ovs_dpdk_other_config,
    read_nr_hugepages,
    vsctl_set_other_config,
)
from vdpalab.emulated.guest_image import (  # noqa: E402
    READY_MARKER,
    GuestImage,
    SshKeyPair,
    build_guest_image,
    generate_ssh_keypair,
)
from vdpalab.emulated.qemu import DataNic, QemuProcess, QemuSpec, guest_append  # noqa: E402
from vdpalab.errors import LabStateError  # noqa: E402

SEED_NIC_OPTIONS = ("page-per-vq=on", "iommu_platform=on", "disable-legacy=on")
TCG_NIC_OPTIONS = ("vectors=0",)  # QEMU 7.2 under TCG segfaults when vhost-user starts with MSI-X


@dataclass(frozen=True)
class Guest:
    name: str
    ip: str
    data_mac: str
    mgmt_mac: str
    bridge: str
    uplink: str
    vhu_port: str


GUESTS = (
    Guest("c77g153", "192.168.30.153/24", "52:54:00:30:01:53", "52:54:00:aa:01:53", "br30-ovs", "ens2f0", "ens2f0_0"),
    Guest("c77g159", "192.168.30.159/24", "52:54:00:31:01:59", "52:54:00:aa:01:59", "br31-ovs", "ens2f1", "ens2f1_0"),
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], *, env: dict | None = None, timeout: float = 60, check: bool = True) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        raise LabStateError(f"{' '.join(cmd)} exited with rc={proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc.stdout


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_matches(pid: int, needle: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``needle`` (a path only our process uses)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return proc_running(pid) and needle in cmdline


def proc_running(pid: int) -> bool:
    """Not gone and not a zombie. (An exiting process loses its cmdline before it closes its files, so "cmdline is
    empty" is not "resources released"; only a zombie or a vanished pid is.)"""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while proc_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_pidfile(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def kill_pid(pid: int | None, needle: str, *, grace: float = 10.0) -> str:
    """SIGTERM then SIGKILL ``pid``, only if it is still the process we started (its cmdline has ``needle``)."""
    if pid is None:
        return "no pid"
    if not pid_matches(pid, needle):
        return f"pid {pid} gone" if wait_gone(pid, grace) else f"pid {pid} not ours any more, left alone"
    os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, grace):
        return f"pid {pid} terminated"
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid, 10.0)
    return f"pid {pid} SIGKILLed"


# ----------------------------------------------------------------------------------------------- snapshot


def snapshot(prefix: str, netns_prefix: str, mountpoint: Path) -> dict:
    """What must be equal before and after the run."""
    netns = sorted(line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip())
    links = sorted(re.findall(r"^\d+: ([^:@]+)", run(["ip", "-o", "link", "show"]), re.M))
    return {
        "netns": [n for n in netns if n.startswith(netns_prefix)],
        "root_links": links,
        "nr_hugepages_2M": read_nr_hugepages(2048),
        "hugetlbfs_mount": mounts_at(mountpoint) if mountpoint.exists() else [],
        "dpdk_root_exists": DPDK_RUNTIME_ROOT.exists(),
        "dpdk_runtime_dir": dpdk_runtime_dir(prefix).exists(),
        "mount_count": len(Path("/proc/self/mounts").read_text().splitlines()),
    }


# ----------------------------------------------------------------------------------------------- guest ssh


class GuestSsh:
    """paramiko to a guest's dropbear over the loopback port forward, pinned to the image's host key.

    Each command waits for its exit status before the next channel opens: dropbear 2022.83 aborts the whole
    connection (``Failed assertion (common-channel.c:705): !channel->sent_close``, mkj/dropbear#321) when a channel
    is opened while the previous one is still closing. A failure to open a channel (the command did not run) is
    retried once on a fresh connection.
    """

    def __init__(self, port: int, key_file: Path, host_key: str, name: str) -> None:
        self.port, self.key_file, self.host_key, self.name = port, key_file, host_key, name
        self.client: paramiko.SSHClient | None = None

    def connect(self) -> None:
        client = paramiko.SSHClient()
        kind, blob = self.host_key.split()[:2]
        client.get_host_keys().add(f"[127.0.0.1]:{self.port}", kind, paramiko.PKey.from_type_string(kind, _b64(blob)))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect("127.0.0.1", port=self.port, username="root", key_filename=str(self.key_file),
                       look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(5)
        self.client = client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def run(self, command: str, *, timeout: float = 60.0, check: bool = True) -> tuple[int, str, str]:
        for attempt in (1, 2):
            if self.client is None:
                self.connect()
            assert self.client is not None
            transport = self.client.get_transport()
            try:
                if transport is None or not transport.is_active():
                    raise paramiko.SSHException("transport not active")
                chan = transport.open_session(timeout=10)
                chan.exec_command(command)
            except (paramiko.SSHException, OSError) as exc:
                self.close()
                if attempt == 2:
                    raise LabStateError(f"{self.name}: cannot run {command!r}: {exc}")
                continue
            rc, out, err = self._collect(chan, command, timeout)
            if check and rc != 0:
                raise LabStateError(f"{self.name}: {command!r} exited with rc={rc}: {(err or out).strip()[-500:]}")
            return rc, out, err
        raise AssertionError("unreachable")

    def _collect(self, chan: paramiko.Channel, command: str, timeout: float) -> tuple[int, str, str]:
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        chan.setblocking(False)
        while True:
            select.select([chan], [], [], 0.2)
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                chan.close()
                self.close()
                raise LabStateError(f"{self.name}: {command!r} still running after {timeout:g} s")
        rc = chan.recv_exit_status()
        chan.close()
        return rc, out.decode(errors="replace"), err.decode(errors="replace")


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


# ----------------------------------------------------------------------------------------------- the lab


class PocLab:
    def __init__(self, state: Path, lab: str, *, hugepages: bool, pages: int, accel: str,
                 pmd_maxsleep: int | None = 50) -> None:
        self.state = state.resolve()
        self.lab = lab
        self.netns = f"vdpalab-{lab}-host"
        self.prefix = f"vdpalab-{lab}"
        self.rundir = self.state / "run"
        self.dbdir = self.state / "db"
        self.logdir = self.state / "log"
        self.hugedir = self.state / "hugepages"
        self.use_hugepages = hugepages
        self.pages = pages
        self.accel = accel
        self.pmd_maxsleep = pmd_maxsleep
        self.cleanups: list[tuple[str, Callable[[], object]]] = []
        self.guests: dict[str, QemuProcess] = {}
        self.ssh: dict[str, GuestSsh] = {}
        self.lease: HugepageLease | None = None
        self.timings: dict[str, float] = {}
        self.before: dict = {}

    # ---- helpers
    @property
    def ovs_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(OVS_RUNDIR=str(self.rundir), OVS_DBDIR=str(self.dbdir), OVS_LOGDIR=str(self.logdir),
                   OVS_SYSCONFDIR=str(self.state / "etc"))
        return env

    def vsctl(self, *args: str, timeout: float = 30) -> str:
        return run(["ovs-vsctl", f"--db=unix:{self.rundir}/db.sock", f"--timeout={int(timeout)}", *args],
                   env=self.ovs_env, timeout=timeout + 5)

    def in_ns(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *cmd]

    def defer(self, what: str, fn: Callable[[], object]) -> None:
        self.cleanups.append((what, fn))

    # ---- up
    def netns_up(self) -> None:
        run(["ip", "netns", "add", self.netns])
        self.defer("delete netns", lambda: run(["ip", "netns", "delete", self.netns]))
        run(self.in_ns("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"))
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        # the DAC loop cable between the two "PFs"
        run(["ip", "-n", self.netns, "link", "add", "ens2f0", "type", "veth", "peer", "name", "ens2f1"])
        for ifc in ("ens2f0", "ens2f1"):
            run(self.in_ns("ethtool", "-K", ifc, "tx", "off", "tso", "off", "gso", "off"))
            run(["ip", "-n", self.netns, "link", "set", ifc, "up"])

    def hugepages_up(self) -> None:
        if not self.use_hugepages:
            return
        self.lease = HugepageLease.acquire(self.hugedir, self.pages, journal=self.state / "hugepages.journal.json")
        self.defer("release hugepages", self.lease.release)

    def ovs_up(self) -> None:
        started = time.monotonic()
        for d in (self.rundir, self.dbdir, self.logdir, self.state / "etc"):
            shutil.rmtree(d, ignore_errors=True)  # evidence of this run only
            d.mkdir(parents=True, exist_ok=True)
        db = self.dbdir / "conf.db"
        with contextlib.suppress(FileNotFoundError):
            db.unlink()
        run(["ovsdb-tool", "create", str(db), "/usr/share/openvswitch/vswitch.ovsschema"])
        self.defer("cleanup DPDK runtime dir", self._cleanup_dpdk_runtime)
        self.defer("stop ovsdb-server", lambda: self._stop_daemon("ovsdb-server"))
        run(self.in_ns(
            "ovsdb-server", str(db), f"--remote=punix:{self.rundir}/db.sock",
            f"--pidfile={self.rundir}/ovsdb-server.pid", f"--unixctl={self.rundir}/ovsdb-server.ctl",
            f"--log-file={self.logdir}/ovsdb-server.log", "--detach", "--no-chdir",
        ), env=self.ovs_env, timeout=30)
        self.vsctl("--no-wait", "init")
        cfg = ovs_dpdk_other_config(file_prefix=self.prefix, huge_dir=self.hugedir if self.use_hugepages else None,
                                    pmd_maxsleep_us=self.pmd_maxsleep)
        self.vsctl("--no-wait", *vsctl_set_other_config(cfg))
        self.defer("stop ovs-vswitchd", lambda: self._stop_daemon("ovs-vswitchd"))
        run(self.in_ns(
            find_vswitchd_dpdk(), f"unix:{self.rundir}/db.sock",
            f"--pidfile={self.rundir}/ovs-vswitchd.pid", f"--unixctl={self.rundir}/ovs-vswitchd.ctl",
            f"--log-file={self.logdir}/ovs-vswitchd.log", "--detach", "--no-chdir",
        ), env=self.ovs_env, timeout=120)
        if self.vsctl("get", "Open_vSwitch", ".", "dpdk_initialized").strip() != "true":
            raise LabStateError(f"DPDK not initialised; see {self.logdir}/ovs-vswitchd.log")
        for i, g in enumerate(GUESTS):
            sock = self.rundir / f"vhu-{g.name}.sock"
            self.vsctl("add-br", g.bridge, "--", "set", "bridge", g.bridge, "datapath_type=netdev")
            self.vsctl("add-port", g.bridge, g.uplink, "--", "set", "Interface", g.uplink, "type=dpdk",
                       f'options:dpdk-devargs="net_af_packet{i},iface={g.uplink}"')
            self.vsctl("add-port", g.bridge, g.vhu_port, "--", "set", "Interface", g.vhu_port,
                       "type=dpdkvhostuserclient", f'options:vhost-server-path="{sock}"')
        for g in GUESTS:
            for port in (g.uplink, g.vhu_port):
                err = self.vsctl("get", "Interface", port, "error").strip()
                ofport = self.vsctl("get", "Interface", port, "ofport").strip()
                if err not in ("[]", '""') or ofport in ("-1", "[]"):
                    raise LabStateError(f"OVS port {port}: ofport={ofport} error={err}")
        self.timings["ovs start (s)"] = time.monotonic() - started

    def guests_up(self, image: GuestImage, keypair: SshKeyPair) -> None:
        started = time.monotonic()
        nic_options = SEED_NIC_OPTIONS + (TCG_NIC_OPTIONS if self.accel == "tcg" else ())
        for g in GUESTS:
            port = free_loopback_port()
            spec = QemuSpec(
                name=g.name, accel=self.accel, cpu="max" if self.accel == "tcg" else "host", smp=1, memory_mib=512,
                kernel=image.kernel, initrd=image.initrd,
                append=guest_append([(g.mgmt_mac, "10.0.2.15/24"), (g.data_mac, g.ip)], hostname=g.name),
                mgmt_ssh_port=port, mgmt_mac=g.mgmt_mac, nic_romfile="",
                data_nics=(DataNic("vhost-user", self.rundir / f"vhu-{g.name}.sock", id="net0", mac=g.data_mac,
                                   device_options=nic_options),),
                serial_log=self.logdir / f"{g.name}.console.log", pidfile=self.rundir / f"{g.name}.pid",
                qmp_socket=self.rundir / f"{g.name}.qmp",
            )
            proc = QemuProcess(spec)
            self.defer(f"stop guest {g.name}", proc.stop)
            log(f"qemu {g.name}: {' '.join(proc.argv)}")
            proc.start()
            self.guests[g.name] = proc
        for name, proc in self.guests.items():
            boot = proc.wait_for_console(READY_MARKER, timeout=180)
            ssh_ready = proc.wait_for_ssh(timeout=60)
            self.timings[f"boot to marker {name} (s)"] = boot
            self.timings[f"boot to SSH {name} (s)"] = ssh_ready
            ssh = GuestSsh(proc.spec.mgmt_ssh_port or 0, keypair.private_key, image.host_key, name)
            ssh.connect()
            self.defer(f"close ssh {name}", ssh.close)
            self.ssh[name] = ssh
        self.timings["both guests up (s)"] = time.monotonic() - started
        rss = {name: _rss_mb(proc.pid) for name, proc in self.guests.items() if proc.pid}
        for name, mb in rss.items():
            self.timings[f"QEMU RSS {name} (MB)"] = mb

    # ---- down
    def _stop_daemon(self, name: str) -> str:
        """``ovs-appctl exit`` (lets vswitchd close its DPDK ports), then wait; SIGTERM/SIGKILL by pid after that."""
        pid = read_pidfile(self.rundir / f"{name}.pid")
        if pid is None or not pid_matches(pid, str(self.rundir)):
            return "not running"
        ctl = self.rundir / f"{name}.ctl"
        if ctl.exists():
            subprocess.run(["ovs-appctl", "-t", str(ctl), "exit"], capture_output=True, timeout=20, check=False)
            if wait_gone(pid, 10.0):
                return f"pid {pid} exited (ovs-appctl exit)"
        return kill_pid(pid, str(self.rundir))

    def _cleanup_dpdk_runtime(self) -> list[Path]:
        return cleanup_dpdk_runtime(self.prefix, remove_root=not self.before.get("dpdk_root_exists", True))

    def down(self) -> list[str]:
        problems = []
        for what, fn in reversed(self.cleanups):
            try:
                result = fn()
                log(f"down: {what}: {result if result is not None else 'ok'}")
            except Exception as exc:  # keep tearing down; report at the end
                problems.append(f"{what}: {exc}")
                log(f"down: {what}: FAILED: {exc}")
        self.cleanups.clear()
        return problems


def down_leftovers(lab: PocLab) -> list[str]:
    """Undo what an interrupted run left, from the state dir alone (pidfiles, hugepage journal, before.json)."""
    before_file = lab.state / "before.json"
    with contextlib.suppress(FileNotFoundError, ValueError):
        lab.before = json.loads(before_file.read_text())
    # deferred in bring-up order; down() runs them in reverse: guests, vswitchd, ovsdb, DPDK dir, hugepages, netns
    lab.defer("cleanup DPDK runtime dir", lab._cleanup_dpdk_runtime)
    lab.defer("stop ovsdb-server", lambda: lab._stop_daemon("ovsdb-server"))
    lab.defer("stop ovs-vswitchd", lambda: lab._stop_daemon("ovs-vswitchd"))
    for g in GUESTS:
        spec = QemuSpec(name=g.name, serial_log=lab.logdir / f"{g.name}.console.log",
                        pidfile=lab.rundir / f"{g.name}.pid", qmp_socket=lab.rundir / f"{g.name}.qmp")
        proc = QemuProcess.from_pidfile(spec)
        if proc is not None:
            lab.defer(f"stop guest {g.name}", proc.stop)
    lease = HugepageLease.from_journal(lab.state / "hugepages.journal.json")
    if lease is not None:
        lab.cleanups.insert(0, ("release hugepages", lease.release))
    if lab.netns in run(["ip", "netns", "list"]).split():
        lab.cleanups.insert(0, ("delete netns", lambda: run(["ip", "netns", "delete", lab.netns])))
    problems = lab.down()
    if not problems:
        with contextlib.suppress(FileNotFoundError):
            before_file.unlink()
    return problems


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def parse_dump_ports(text: str) -> dict[str, dict[str, int | None]]:
    """port name -> rx_pkts, rx_drop, rx_errs, tx_pkts, tx_drop, tx_errs from ``ovs-ofctl --names dump-ports``.

    (The suite's real parser lives in vdpalab/parsers; this is the PoC's own minimal one.) ``?`` -> None.
    """
    ports: dict[str, dict[str, int | None]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r'\s*port\s+"?([^":]+?)"?:\s+rx (.*)', line)
        direction = "rx"
        if m:
            current = m.group(1).strip()
            ports[current] = {}
            rest = m.group(2)
        else:
            m = re.match(r"\s*tx (pkts=.*)", line)
            if not m or current is None:
                continue
            direction, rest = "tx", m.group(1)
        for key, value in re.findall(r"(\w+)=([^,\s]+)", rest):
            if key in ("pkts", "drop", "errs"):
                ports[current][f"{direction}_{key}"] = None if value == "?" else int(value)
    return ports


def measure(lab: PocLab, flood_count: int, iperf_seconds: int) -> dict:
    g1, g2 = lab.ssh["c77g153"], lab.ssh["c77g159"]
    dst = GUESTS[1].ip.split("/")[0]
    results: dict = {}
    _, out, _ = g1.run(f"/usr/bin/ping -c 3 -i 0.2 -W 2 {dst}", timeout=30)
    log("warm-up ping:\n" + out.strip())
    started = time.monotonic()
    _, out, _ = g1.run(f"/usr/bin/ping -f -q -c {flood_count} -w 120 {dst}", timeout=150)
    results["flood ping wall (s)"] = time.monotonic() - started
    log(f"ping -f -q -c {flood_count}:\n" + out.strip())
    m = re.search(r"(\d+) packets transmitted, (\d+) received.*?([\d.]+)% packet loss", out)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    if not m:
        raise LabStateError(f"cannot read ping summary: {out!r}")
    results.update(ping_tx=int(m.group(1)), ping_rx=int(m.group(2)), ping_loss_pct=float(m.group(3)))
    if rtt:
        results.update(rtt_min_ms=float(rtt.group(1)), rtt_avg_ms=float(rtt.group(2)), rtt_max_ms=float(rtt.group(3)))
    equal, notes = check_counters(dump_ports(lab))
    for note in notes:
        log("after ping: " + note)
    results["counters_equal_after_ping"] = equal
    g2.run("/usr/bin/iperf3 -s -1 -D", timeout=20)
    time.sleep(0.5)
    _, out, _ = g1.run(f"/usr/bin/iperf3 -c {dst} -t {iperf_seconds} -J", timeout=iperf_seconds + 60)
    data = json.loads(out)
    results["iperf3_sent_gbps"] = data["end"]["sum_sent"]["bits_per_second"] / 1e9
    results["iperf3_recv_gbps"] = data["end"]["sum_received"]["bits_per_second"] / 1e9
    results["iperf3_retransmits"] = data["end"]["sum_sent"].get("retransmits")
    equal, notes = check_counters(dump_ports(lab))
    for note in notes:
        log("after iperf3: " + note)
    results["counters_equal_after_iperf3"] = equal
    return results


def dump_ports(lab: PocLab) -> dict[str, dict[str, dict[str, int | None]]]:
    parsed = {}
    for bridge in sorted({g.bridge for g in GUESTS}):
        out = run(["ovs-ofctl", "--names", "-O", "OpenFlow14", "dump-ports", bridge], env=lab.ovs_env)
        print(f"$ OVS_RUNDIR={lab.rundir} ovs-ofctl --names -O OpenFlow14 dump-ports {bridge}\n{out}", flush=True)
        parsed[bridge] = parse_dump_ports(out)
    return parsed


def check_counters(parsed: dict[str, dict[str, dict[str, int | None]]]) -> tuple[bool, list[str]]:
    """The seed's criterion: on each bridge the uplink's rx equals the guest port's tx and the other way round.

    Returns (all equal, notes). A difference explained by the port's tx drops (a TCG guest not keeping up with
    iperf3) is reported as such.
    """
    notes, all_equal = [], True
    for g in GUESTS:
        ports = parsed.get(g.bridge, {})
        up, vhu = ports.get(g.uplink), ports.get(g.vhu_port)
        if not up or not vhu:
            notes.append(f"{g.bridge}: missing ports in dump-ports: {sorted(ports)}")
            all_equal = False
            continue
        ok = up["rx_pkts"] == vhu["tx_pkts"] and up["tx_pkts"] == vhu["rx_pkts"]
        verdict = "EQUAL"
        if not ok:
            all_equal = False
            explained = (up["rx_pkts"] == vhu["tx_pkts"] + (vhu["tx_drop"] or 0)
                         and up["tx_pkts"] + (up["tx_drop"] or 0) == vhu["rx_pkts"])
            verdict = f"DIFFER{' (explained by tx drops)' if explained else ''}"
        notes.append(f"{g.bridge}: {g.uplink} rx={up['rx_pkts']} tx={up['tx_pkts']} tx_drop={up['tx_drop']} / "
                     f"{g.vhu_port} rx={vhu['rx_pkts']} tx={vhu['tx_pkts']} tx_drop={vhu['tx_drop']} -> {verdict}")
    return all_equal, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", type=Path, default=REPO / ".state" / "poc-qemu")
    ap.add_argument("--image-cache", type=Path, default=REPO / ".state" / "images")
    ap.add_argument("--lab", default="poc")
    ap.add_argument("--cold", action="store_true", help="wipe the image cache first to time a cold build")
    ap.add_argument("--no-huge", action="store_true", help="OVS-DPDK without hugepages (--no-huge --legacy-mem)")
    ap.add_argument("--pages", type=int, default=256, help="2 MiB hugepages to reserve")
    ap.add_argument("--accel", default="tcg", help="tcg here (KVM hangs on this host); kvm where it works")
    ap.add_argument("--pmd-maxsleep", type=int, default=50, help="µs an idle PMD may sleep (0: busy polling)")
    ap.add_argument("--flood-count", type=int, default=2000)
    ap.add_argument("--iperf-seconds", type=int, default=3)
    ap.add_argument("--keep-up", type=float, default=0.0, help="seconds to keep the lab up before teardown")
    ap.add_argument("--down", action="store_true", help="only tear down what an interrupted run left")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, hugepages, mounts)", file=sys.stderr)
        return 2
    t_all = time.monotonic()
    lab = PocLab(args.state, args.lab, hugepages=not args.no_huge, pages=args.pages, accel=args.accel,
                 pmd_maxsleep=args.pmd_maxsleep)
    if args.down:
        problems = down_leftovers(lab)
        for p in problems:
            print("  " + p)
        return 1 if problems else 0
    lab.before = snapshot(lab.prefix, f"vdpalab-{args.lab}-", lab.hugedir)
    log(f"before: {json.dumps(lab.before)}")
    if lab.before["netns"] or lab.before["dpdk_runtime_dir"] or lab.before["hugetlbfs_mount"]:
        print(f"leftovers of an earlier run: {lab.before}; run with --down first", file=sys.stderr)
        return 2
    lab.state.mkdir(parents=True, exist_ok=True)
    (lab.state / "before.json").write_text(json.dumps(lab.before) + "\n")

    # Ctrl-C / SIGTERM must still tear down
    def _on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _on_signal)
    failed: list[str] = []
    results: dict = {}
    try:
        if args.cold:
            shutil.rmtree(args.image_cache, ignore_errors=True)
        keypair = generate_ssh_keypair(REPO / ".state" / "keys" / "id_ed25519")
        t = time.monotonic()
        image = build_guest_image(args.image_cache, pubkey=keypair.public_key, log=log)
        lab.timings["image build first call (s)"] = time.monotonic() - t
        t = time.monotonic()
        image2 = build_guest_image(args.image_cache, pubkey=keypair.public_key, log=log)
        lab.timings["image build warm call (s)"] = time.monotonic() - t
        assert image2 == image
        missing = missing_dpdk_drivers()
        if missing:
            raise LabStateError(f"DPDK plugins missing: apt-get install {' '.join(missing)}")
        lab.netns_up()
        lab.hugepages_up()
        lab.ovs_up()
        log(lab.vsctl("show"))
        log("other_config: " + lab.vsctl("get", "Open_vSwitch", ".", "other_config").strip())
        lab.guests_up(image, keypair)
        results = measure(lab, args.flood_count, args.iperf_seconds)
        if args.keep_up:
            time.sleep(args.keep_up)
    except BaseException as exc:  # report, then tear down (KeyboardInterrupt too)
        failed.append(f"{type(exc).__name__}: {exc}")
        log(f"FAILED: {type(exc).__name__}: {exc}")
        for proc in lab.guests.values():
            log(proc.console_tail(15))
    finally:
        t = time.monotonic()
        problems = lab.down()
        lab.timings["teardown (s)"] = time.monotonic() - t
    after = snapshot(lab.prefix, f"vdpalab-{args.lab}-", lab.hugedir)
    log(f"after:  {json.dumps(after)}")
    leftover_pids = [p.pid for p in lab.guests.values() if p.pid and p.alive()]
    if after != lab.before:
        problems.append(f"machine differs: before={lab.before} after={after}")
    else:
        (lab.state / "before.json").unlink(missing_ok=True)
    if leftover_pids:
        problems.append(f"QEMU pids still alive: {leftover_pids}")
    lab.timings["whole run (s)"] = time.monotonic() - t_all
    print("\n== results ==")
    for k, v in results.items():
        print(f"  {k}: {v:.3f}" if isinstance(v, float) else f"  {k}: {v}")
    print("== timings ==")
    for k, v in lab.timings.items():
        print(f"  {k}: {v:.3f}")
    if failed or problems:
        print("== FAILED ==")
        for p in failed + problems:
            print("  " + p)
        return 1
    if results.get("ping_loss_pct", 100.0) != 0.0:
        print("== FAILED: flood ping lost packets ==")
        return 1
    print("== OK: machine after equals machine before ==")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "poc"
    sys.exit(main())
