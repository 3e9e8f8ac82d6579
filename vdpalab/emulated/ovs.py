"""A private Open vSwitch (ovsdb-server + ovs-vswitchd) inside the emulated host's namespace.

On a real host OVS is a system service; here ``ovs-ctl`` and systemd are not usable, so the
two daemons are started directly, inside the host namespace (``ip netns exec``), with a rundir,
dbdir and logdir under the lab's state directory. Socket paths are absolute (a relative
``unix:`` path made ``--detach`` hang). The host's sshd exports ``OVS_RUNDIR``/``OVS_DBDIR``/
``OVS_LOGDIR`` so ``ovs-vsctl``, ``ovs-ofctl`` and ``ovs-appctl`` run over SSH reach these
daemons with the same command lines as on hardware. No ``--monitor``: the pidfile is the daemon.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vdpalab.emulated.daemons import pid_is_ours, read_pidfile, stop_ours
from vdpalab.errors import LabStateError

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
OVSDB_SERVER = "ovsdb-server"
OVS_VSWITCHD = "ovs-vswitchd"
# AF_UNIX paths are limited to 108 bytes; "ovs-vswitchd.PID.ctl" is the longest name OVS puts in the rundir
_MAX_RUNDIR = 108 - len("/ovs-vswitchd.4194304.ctl") - 1


@dataclass(frozen=True)
class OvsDirs:
    """Where the private OVS keeps its sockets, database and logs."""

    run: Path
    db: Path
    log: Path

    @property
    def db_file(self) -> Path:
        return self.db / "conf.db"

    @property
    def db_sock(self) -> Path:
        return self.run / "db.sock"

    def pidfile(self, daemon: str) -> Path:
        return self.run / f"{daemon}.pid"

    def env(self) -> dict[str, str]:
        """The environment under which the OVS tools find these daemons (also the sshd's SetEnv)."""
        return {"OVS_RUNDIR": str(self.run), "OVS_DBDIR": str(self.db), "OVS_LOGDIR": str(self.log)}


class PrivateOvs:
    """Start, probe and stop the lab's own OVS daemons (by verified pid, never by name)."""

    def __init__(self, netns: str, dirs: OvsDirs, marker: str, vswitchd_binary: str = OVS_VSWITCHD) -> None:
        self.netns = netns
        self.dirs = dirs
        self.marker = marker  # every daemon's command line contains it (the state dir)
        self.vswitchd_binary = vswitchd_binary  # the DPDK build in the emulated-qemu lab; the pidfile name stays
        if len(str(dirs.run)) > _MAX_RUNDIR:
            raise LabStateError(
                f"OVS rundir {dirs.run} is {len(str(dirs.run))} characters; unix socket paths in it would "
                f"exceed 108 bytes (use a shorter emulated.state_dir)"
            )

    def pid(self, daemon: str) -> int | None:
        """The daemon's pid when it runs and is ours, else None."""
        pid = read_pidfile(self.dirs.pidfile(daemon))
        return pid if pid_is_ours(pid, self.marker) else None

    def running(self) -> dict[str, int | None]:
        return {daemon: self.pid(daemon) for daemon in (OVSDB_SERVER, OVS_VSWITCHD)}

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.dirs.env()}

    def _run(self, argv: list[str], what: str) -> None:
        try:
            proc = subprocess.run(
                argv, env=self._env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20
            )
        except FileNotFoundError as exc:
            raise LabStateError(f"{what}: {exc.filename} not found (install openvswitch-switch)")
        except subprocess.TimeoutExpired:
            raise LabStateError(f"{what}: {' '.join(argv)} did not finish within 20 s")
        if proc.returncode != 0:
            raise LabStateError(f"{what}: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")

    def _in_netns(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def start(self) -> list[str]:
        """Start whatever is not running; returns what was started. An existing database is kept."""
        started: list[str] = []
        for path in (self.dirs.run, self.dirs.db, self.dirs.log):
            path.mkdir(parents=True, exist_ok=True)
        if not self.dirs.db_file.exists():
            if not SCHEMA.exists():
                raise LabStateError(f"{SCHEMA} not found (install openvswitch-switch)")
            self._run(["ovsdb-tool", "create", str(self.dirs.db_file), str(SCHEMA)], "create the OVS database")
        if self.pid(OVSDB_SERVER) is None:
            self.dirs.db_sock.unlink(missing_ok=True)
            self._run(
                self._in_netns([
                    OVSDB_SERVER,
                    str(self.dirs.db_file),
                    f"--remote=punix:{self.dirs.db_sock}",
                    "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
                    f"--pidfile={self.dirs.pidfile(OVSDB_SERVER)}",
                    f"--unixctl={self.dirs.run / 'ovsdb-server.ctl'}",
                    f"--log-file={self.dirs.log / 'ovsdb-server.log'}",
                    "-vconsole:off",
                    "--detach",
                ]),
                "start ovsdb-server",
            )
            self._run(["ovs-vsctl", f"--db=unix:{self.dirs.db_sock}", "--no-wait", "init"], "initialise the OVS db")
            started.append(OVSDB_SERVER)
        if self.pid(OVS_VSWITCHD) is None:
            self._run(
                self._in_netns([
                    self.vswitchd_binary,
                    f"unix:{self.dirs.db_sock}",
                    f"--pidfile={self.dirs.pidfile(OVS_VSWITCHD)}",
                    f"--log-file={self.dirs.log / 'ovs-vswitchd.log'}",
                    "-vconsole:off",
                    "--detach",
                ]),
                "start ovs-vswitchd",
            )
            started.append(OVS_VSWITCHD)
        return started

    def stop(self) -> list[str]:
        """Stop both daemons (vswitchd first) by their verified pids; returns what was stopped."""
        stopped: list[str] = []
        for daemon in (OVS_VSWITCHD, OVSDB_SERVER):
            pidfile = self.dirs.pidfile(daemon)
            if stop_ours(read_pidfile(pidfile), self.marker):
                stopped.append(daemon)
            pidfile.unlink(missing_ok=True)
        return stopped

    def remove_state(self) -> None:
        """Forget the database and the rundir (after ``stop``): the next lab starts from an empty OVS."""
        for directory in (self.dirs.run, self.dirs.db):
            if directory.is_dir():
                for entry in directory.iterdir():
                    if entry.is_file() or entry.is_socket() or entry.is_symlink():
                        entry.unlink(missing_ok=True)
                    # a leftover directory inside run/db is not ours to guess about: leave it
