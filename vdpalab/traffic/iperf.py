"""iperf3 between two hosts: a one-off server on a free port, a client with a hard timeout.

The server side is the fragile part of iperf3 automation (a port left in use, a
server left behind by a failed run, a client waiting forever on a dead server).
So: the port is checked free with ``ss -ltn`` on the server host, the server runs
detached with ``-1`` (it exits after one test) and is stopped by its pid in a
``finally``; the client gets ``--connect-timeout`` and runs under ``timeout(1)``
on its host (so a hung client dies there even if our SSH channel is gone) and
under the Host timeout. A failed run fails with iperf3's own words: the JSON
``error`` field.
"""

from __future__ import annotations

import random
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from vdpalab.errors import HostError, ParseError
from vdpalab.hosts.base import CommandResult, Host
from vdpalab.parsers.iperf import Iperf3Result, parse_iperf3
from vdpalab.traffic.jobs import Job, JobError, WorkDir, start_job

PORT_RANGE = (5201, 5299)


class IperfError(HostError):
    """The iperf3 server could not be started, or the client could not be run at all."""


LISTENING_ARGV = ["ss", "-Hltn"]


def listening_ports(host: Host) -> set[int]:
    """TCP ports in LISTEN state on ``host`` (``ss -Hltn``; the header-less form parses line by line)."""
    result = host.run(LISTENING_ARGV, timeout=host.quick_timeout)
    if not result.ok:
        raise IperfError(host.name, result.command, f"ss -Hltn failed (rc={result.rc}): {result.stderr.strip()}")
    ports: set[int] = set()
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            m = re.search(r":(\d+)$", fields[3])
            if m:
                ports.add(int(m.group(1)))
    return ports


def pick_free_port(host: Host, rng: random.Random | None = None, port_range: tuple[int, int] = PORT_RANGE) -> int:
    """A port in ``port_range`` nobody listens on now (random start, so parallel runs rarely collide)."""
    used = listening_ports(host)
    lo, hi = port_range
    candidates = [p for p in range(lo, hi + 1) if p not in used]
    if not candidates:
        raise IperfError(host.name, "ss -Hltn", f"no free TCP port in {lo}-{hi}")
    return (rng or random.Random()).choice(candidates)


@dataclass
class Iperf3Server:
    """A running one-off iperf3 server: where it listens and how to stop it."""

    host: Host
    port: int
    job: Job
    workdir: WorkDir

    def log(self) -> str:
        return self.job.stdout() + self.job.stderr()


@contextmanager
def iperf3_server(
    host: Host,
    *,
    binary: str = "iperf3",
    port: int | None = None,
    ready_timeout: float | None = None,
    attempts: int = 3,
) -> Iterator[Iperf3Server]:
    """Start ``iperf3 -s -1 -p PORT`` on ``host``, wait until it listens, stop it by pid on exit.

    A port grabbed by someone else between the check and the bind is retried on
    another port (up to ``attempts`` times).
    """
    ready_timeout = host.quick_timeout if ready_timeout is None else ready_timeout  # a slow guest starts slowly
    workdir = WorkDir.create(host, "vdpalab-iperf3")
    server: Iperf3Server | None = None
    try:
        last_error = ""
        for _ in range(attempts):
            chosen = port if port is not None else pick_free_port(host)
            job = start_job(host, "iperf3-server", [binary, "-s", "-1", "-p", str(chosen)], workdir)

            def listening(p: int = chosen) -> bool:
                return p in listening_ports(host)

            try:
                job.wait_for(listening, ready_timeout, f"listening on port {chosen}", reads=[LISTENING_ARGV])
            except JobError as exc:
                job.stop()
                last_error = str(exc)
                if port is not None or not exc.exited:  # a hung server is not a port race: no retry
                    break
                continue
            server = Iperf3Server(host, chosen, job, workdir)
            break
        if server is None:
            raise IperfError(host.name, f"{binary} -s", f"iperf3 server did not start: {last_error}")
        yield server
    finally:
        if server is not None:
            server.job.stop()
        workdir.remove()


@dataclass(frozen=True)
class Iperf3Spec:
    """One client run: TCP (optionally N streams, reverse) or UDP at a rate."""

    server: str
    port: int = 5201
    duration_s: float = 5.0
    omit_s: float = 0.0
    streams: int = 1
    reverse: bool = False
    udp: bool = False
    rate: str | None = None  # "100M"; UDP without a rate is iperf3's 1 Mbit/s default
    length: int | None = None
    connect_timeout_ms: int = 5000
    binary: str = "iperf3"

    def argv(self) -> list[str]:
        argv = [self.binary, "-c", self.server, "-p", str(self.port), "-J",
                "-t", f"{self.duration_s:g}", "--connect-timeout", str(self.connect_timeout_ms)]
        if self.omit_s:
            argv += ["-O", f"{self.omit_s:g}"]
        if self.streams != 1:
            argv += ["-P", str(self.streams)]
        if self.reverse:
            argv.append("-R")
        if self.udp:
            argv.append("-u")
            if self.rate:
                argv += ["-b", self.rate]
            if self.length:
                argv += ["-l", str(self.length)]
        elif self.rate:
            argv += ["-b", self.rate]
        return argv

    @property
    def expected_s(self) -> float:
        return self.duration_s + self.omit_s


@dataclass
class Iperf3Run:
    """One finished client run; ``error`` is iperf3's own message (or why there is no result)."""

    spec: Iperf3Spec
    client: str
    server_host: str
    result: CommandResult | None
    parsed: Iperf3Result | None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def direction(self) -> str:
        return "reverse" if self.spec.reverse else "forward"

    @property
    def label(self) -> str:
        proto = f"UDP {self.spec.rate or 'default'} rate" if self.spec.udp else f"TCP x{self.spec.streams}"
        sender, receiver = (self.server_host, self.client) if self.spec.reverse else (self.client, self.server_host)
        return f"iperf3 {proto} {sender} -> {receiver}"

    @property
    def throughput_gbps(self) -> float | None:
        """What the receiver got (TCP: sum_received; UDP: receiver rate, else sender rate)."""
        if self.parsed is None:
            return None
        bps = self.parsed.received_bps if self.parsed.received_bps is not None else self.parsed.sent_bps
        return None if bps is None else bps / 1e9

    @property
    def interval_gbps(self) -> list[float]:
        return [] if self.parsed is None else [b / 1e9 for b in self.parsed.interval_bps]


def run_iperf3(
    client: Host, spec: Iperf3Spec, *, server_host: str = "server", timeout: float | None = None
) -> Iperf3Run:
    """Run the client on ``client``; ``timeout(1)`` on the host, then the Host timeout, bound it.

    Never raises for an iperf3 failure: the run comes back with ``error`` set
    (iperf3's JSON ``error``, else its stderr). ``HostError`` (host unreachable,
    Host timeout) propagates: the test fails with the transport's message.
    """
    budget = timeout if timeout is not None else spec.expected_s + spec.connect_timeout_ms / 1000 + 20.0
    inner = max(5, int(budget) - 3)  # timeout(1) fires first, so the host sees a clean exit 124
    cmd = (
        f"if command -v timeout >/dev/null 2>&1; then exec timeout -k 2 {inner} {shlex.join(spec.argv())}; "
        f"else exec {shlex.join(spec.argv())}; fi"
    )
    result = client.run(cmd, timeout=budget)
    run = Iperf3Run(spec=spec, client=client.name, server_host=server_host, result=result, parsed=None)
    if result.rc == 124:
        run.error = f"iperf3 client still running after {inner} s and was killed by timeout(1)"
        return run
    if result.rc == 127:
        run.error = f"{spec.binary} not found on {client.name}: {result.stderr.strip()}"
        return run
    try:
        run.parsed = parse_iperf3(result.stdout)
    except ParseError as exc:
        stderr = result.stderr.strip()
        run.error = f"iperf3 exited {result.rc}: " + (stderr[-500:] if stderr else f"unreadable output ({exc})")
        return run
    if run.parsed.error:
        run.error = run.parsed.error
    elif result.rc != 0:
        run.error = f"iperf3 exited {result.rc} without an error message: {result.stderr.strip()[-300:]}"
    return run


def iperf3_between(
    client: Host,
    server: Host,
    spec: Iperf3Spec,
    *,
    timeout: float | None = None,
    ready_timeout: float | None = None,
) -> Iperf3Run:
    """Start a one-off server on ``server`` (free port), run ``spec`` from ``client``, stop the server.

    ``spec.port`` is replaced by the port actually used. The server's own log is
    kept in ``notes`` when the run failed (it often says why).
    """
    with iperf3_server(server, binary=spec.binary, ready_timeout=ready_timeout) as srv:
        used = replace(spec, port=srv.port)
        run = run_iperf3(client, used, server_host=server.name, timeout=timeout)
        if run.error:
            try:
                log = srv.log().strip()
            except HostError:
                log = ""
            if log:
                run.notes.append(f"server log on {server.name}: {log[-1000:]}")
    if srv.job.notes:
        run.notes += srv.job.notes
    return run


def iperf_problems(run: Iperf3Run) -> list[str]:
    """What makes the run unusable as a measurement (an error, a missing figure).

    Limits (throughput, UDP loss) are judged by the one judge from the recorded figures.
    """
    if run.error or run.parsed is None:
        return [f"{run.label}: failed: {run.error or 'no result'}"]
    problems: list[str] = []
    if run.throughput_gbps is None:
        problems.append(f"{run.label}: no throughput figure in the result")
    if run.spec.udp and run.parsed.lost_percent is None:
        problems.append(f"{run.label}: the result has no UDP loss figure")
    return problems
