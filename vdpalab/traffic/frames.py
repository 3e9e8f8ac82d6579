"""Crafted frames: built with scapy here, sent raw from one guest, sniffed raw on the other.

The guests need nothing but ``python3`` (standard library): two tiny programs are
written to a private temp directory on each guest. The sniffer opens an
AF_PACKET socket on the data interface *before* anything is sent, keeps only
frames carrying one of this run's unique markers (everything else is tallied as
noise, see ``noise``) and stops shortly after an end-of-test frame arrives (or at
its timeout). The sender writes each frame with an AF_PACKET socket and reports
per frame what the kernel said (a frame over the interface MTU is refused with
EMSGSIZE: that is "dropped at the sender", and the result says so).

The kernel strips a VLAN tag into packet metadata on receive; the sniffer asks for
it (PACKET_AUXDATA) and puts the tag back, so "did the tag survive" is answered
from what the wire carried.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field

from vdpalab.hosts.base import Host
from vdpalab.traffic import noise
from vdpalab.traffic.jobs import JobError, WorkDir, start_job

# An ethertype reserved for local experiments (IEEE 802 "Local Experimental Ethertype 1").
ETH_P_EXPERIMENTAL = 0x88B5
IGMP_ALL_ROUTERS_V3 = "224.0.0.22"
IGMP_V3_MAC = "01:00:5e:00:00:16"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"

SNIFFER_PY = r'''
import json, select, socket, struct, sys, time
iface, timeout, grace, end_marker = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4].encode()
markers = [m.encode() for m in sys.argv[5:]]
SOL_PACKET, PACKET_AUXDATA = 263, 8
TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 0x10, 0x40
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((iface, 0))
print("ready", flush=True)
deadline, end_at = time.time() + timeout, None
found, noise, noise_count, ended = [], [], 0, False
while True:
    limit = min(deadline, end_at) if end_at else deadline
    now = time.time()
    if now >= limit:
        break
    if not select.select([s], [], [], limit - now)[0]:
        continue
    data, anc, _flags, addr = s.recvmsg(65600, socket.CMSG_SPACE(20))
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    for level, kind, cdata in anc:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(cdata) >= 20:
            status, _len, _snap, _mac, _net, tci, tpid = struct.unpack("IIIHHHH", cdata[:20])
            if status & TP_STATUS_VLAN_VALID:
                tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
    if end_marker in data:
        ended = True
        if end_at is None:
            end_at = time.time() + grace
        continue
    hit = [m.decode() for m in markers if m in data]
    if hit:
        found.append({"marker": hit[0], "hex": data.hex(), "len": len(data), "t": time.time()})
    else:
        noise_count += 1
        if len(noise) < 50:
            noise.append(data[:96].hex())
print(json.dumps({"frames": found, "noise": noise, "noise_count": noise_count, "ended": ended}), flush=True)
'''

SENDER_PY = r'''
import errno, json, socket, sys, time
iface, gap = sys.argv[1], float(sys.argv[2])
frames = json.load(sys.stdin)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((iface, 0))
out = []
for f in frames:
    raw = bytes.fromhex(f["hex"])
    try:
        n = s.send(raw)
        out.append({"name": f["name"], "sent": n})
    except OSError as e:
        out.append({"name": f["name"], "error": errno.errorcode.get(e.errno, str(e.errno)), "message": e.strerror})
    time.sleep(gap)
print(json.dumps(out), flush=True)
'''


@dataclass(frozen=True)
class FrameCase:
    """One crafted frame and what must happen to it."""

    name: str
    frame: bytes
    marker: str
    must_arrive: bool
    why: str
    vlan: int | None = None  # the 802.1Q VID the frame must still carry at the receiver


@dataclass
class FrameOutcome:
    """What happened to one case: what the sender's kernel said, what the sniffer saw."""

    case: FrameCase
    send_error: str | None
    received: list[bytes]
    noise: dict[str, int]
    sniffer_saw_end: bool
    notes: list[str] = field(default_factory=list)

    @property
    def arrived(self) -> bool:
        return bool(self.received)

    def vlan_ids(self) -> list[int | None]:
        out: list[int | None] = []
        for frame in self.received:
            if len(frame) >= 18 and frame[12:14] == b"\x81\x00":
                out.append(int.from_bytes(frame[14:16], "big") & 0x0FFF)
            else:
                out.append(None)
        return out


def new_marker(kind: str) -> str:
    """Unique per case and run: noise (or an earlier run's late frame) can never match it."""
    return f"VDPALAB-{uuid.uuid4().hex[:16]}-{kind}"


def _pad(payload: bytes, total: int) -> bytes:
    return payload + b"\x00" * max(0, total - len(payload))


def build_cases(
    *,
    src_mac: str,
    dst_mac: str,
    src_ip: str,
    dst_ip: str,
    receiver_mtu: int,
    vlan: int = 100,
) -> dict[str, FrameCase]:
    """The seed-inspired cases, each with its own marker (scapy is imported only here)."""
    from scapy.layers.igmp import IGMPv3_MR, IGMPv3_MR_Group
    from scapy.layers.inet import IP, UDP, IPOption_Router_Alert
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw

    cases: dict[str, FrameCase] = {}

    m = new_marker("broadcast")
    frame = Ether(dst=BROADCAST_MAC, src=src_mac, type=ETH_P_EXPERIMENTAL) / Raw(_pad(m.encode(), 46))
    cases["broadcast"] = FrameCase("broadcast", bytes(frame), m, True, "a broadcast is flooded to every port")

    m = new_marker("igmp")
    frame = (
        Ether(dst=IGMP_V3_MAC, src=src_mac)
        / IP(src=src_ip, dst=IGMP_ALL_ROUTERS_V3, ttl=1, tos=0xC0, options=[IPOption_Router_Alert()])
        / IGMPv3_MR(records=[IGMPv3_MR_Group(rtype=4, maddr="239.255.42.99")])
        / Raw(m.encode())
    )
    cases["igmp"] = FrameCase(
        "igmp", bytes(frame), m, True,
        "IGMPv3 report to 224.0.0.22 (the seed's frame): NORMAL floods multicast when snooping is off",
    )

    m = new_marker("vlan")
    frame = (
        Ether(dst=dst_mac, src=src_mac)
        / Dot1Q(vlan=vlan)
        / IP(src=src_ip, dst=dst_ip)
        / UDP(sport=40000, dport=40001)
        / Raw(m.encode())
    )
    cases["vlan"] = FrameCase(
        "vlan", bytes(frame), m, True,
        f"a VLAN {vlan} frame crosses trunk ports (no tag/trunks set) with its tag intact", vlan=vlan,
    )

    m = new_marker("oversize")
    ip_len = receiver_mtu + 1  # one byte more than the receiver's MTU allows
    base = Ether(dst=dst_mac, src=src_mac) / IP(src=src_ip, dst=dst_ip, flags="DF") / UDP(sport=40000, dport=40002)
    payload = _pad(m.encode(), ip_len - 28)
    frame = base / Raw(payload)
    cases["oversize"] = FrameCase(
        "oversize", bytes(frame), m, False,
        f"an IP packet of {ip_len} bytes (MTU {receiver_mtu} + 1) must be dropped before it reaches the receiver",
    )
    return cases


def end_frame(src_mac: str, marker: str) -> bytes:
    """The last frame of a round: when the sniffer sees it, everything sent before has had its chance."""
    return bytes.fromhex("ff" * 6 + src_mac.replace(":", "") + f"{ETH_P_EXPERIMENTAL:04x}") + _pad(marker.encode(), 46)


def has_python3(host: Host) -> bool:
    return host.run("command -v python3", timeout=host.quick_timeout).ok


@dataclass
class FrameRound:
    """The hosts and interfaces of a send/sniff round."""

    sender: Host
    sender_iface: str
    sender_mac: str
    receiver: Host
    receiver_iface: str
    sniff_timeout_s: float = 8.0
    grace_s: float = 0.5
    gap_s: float = 0.05

    def run(self, cases: list[FrameCase]) -> list[FrameOutcome]:
        """Start the sniffer, wait until it is ready, send, collect. Processes are stopped by pid."""
        end_marker = new_marker("end")
        rx_dir, sniff = WorkDir.create_with(self.receiver, "vdpalab-frames", "sniff.py", SNIFFER_PY)
        tx_dir: WorkDir | None = None
        job = None
        try:
            job = start_job(
                self.receiver, "sniffer",
                ["python3", sniff, self.receiver_iface, f"{self.sniff_timeout_s:g}", f"{self.grace_s:g}", end_marker,
                 *[c.marker for c in cases]],
                rx_dir,
            )
            job.wait_for(lambda: job.stdout().startswith("ready"), 10.0, "ready (AF_PACKET socket bound)",
                         reads=[["cat", job.stdout_path]])
            tx_dir, send = WorkDir.create_with(self.sender, "vdpalab-frames", "send.py", SENDER_PY)
            payload = [{"name": c.name, "hex": c.frame.hex()} for c in cases]
            payload.append({"name": "end", "hex": end_frame(self.sender_mac, end_marker).hex()})
            result = self.sender.run(["python3", send, self.sender_iface, f"{self.gap_s:g}"],
                                     stdin=json.dumps(payload), timeout=30)
            if not result.ok:
                raise JobError(self.sender.name, result.command,
                               f"sender failed (rc={result.rc}): {result.stderr.strip()[-500:]}")
            sent = {entry["name"]: entry for entry in json.loads(result.stdout.strip().splitlines()[-1])}
            if not job.wait_exit(self.sniff_timeout_s + 5.0):
                raise JobError(self.receiver.name, job.command,
                               f"sniffer still running after {self.sniff_timeout_s + 5:g} s")
            lines = [ln for ln in job.stdout().splitlines() if ln.startswith("{")]
            if not lines:
                raise JobError(self.receiver.name, job.command,
                               f"sniffer printed no result: {job.stderr().strip()[-500:]}")
            seen = json.loads(lines[-1])
        finally:
            if job is not None:
                job.stop()
            rx_dir.remove()
            if tx_dir is not None:
                tx_dir.remove()
        noise_counts = dict(noise.tally(bytes.fromhex(h) for h in seen["noise"]))
        if seen["noise_count"] > len(seen["noise"]):
            noise_counts["unclassified (beyond the first 50)"] = seen["noise_count"] - len(seen["noise"])
        outcomes = []
        for case in cases:
            entry = sent.get(case.name, {})
            error = f"{entry['error']} ({entry.get('message', '')})" if "error" in entry else None
            received = [bytes.fromhex(f["hex"]) for f in seen["frames"] if f["marker"] == case.marker]
            outcomes.append(FrameOutcome(case, error, received, noise_counts, bool(seen["ended"])))
        return outcomes


def frame_problems(outcome: FrameOutcome, receiver: str) -> list[str]:
    """Expected vs seen, per case (empty list: the case passed)."""
    case = outcome.case
    problems: list[str] = []
    if not outcome.sniffer_saw_end:
        problems.append(
            f"the end-of-round frame never reached {receiver}: the sniffer timed out, so absences prove nothing"
        )
    if case.must_arrive:
        if outcome.send_error:
            problems.append(f"{case.name}: the sender's kernel refused the frame: {outcome.send_error}")
        elif not outcome.arrived:
            problems.append(f"{case.name}: expected at {receiver} ({case.why}), not seen")
        elif case.vlan is not None:
            vids = outcome.vlan_ids()
            if any(v != case.vlan for v in vids):
                problems.append(f"{case.name}: expected VLAN {case.vlan} at {receiver}, saw {vids}")
    elif outcome.arrived:
        problems.append(
            f"{case.name}: must not reach {receiver} ({case.why}) but arrived "
            f"{len(outcome.received)} time(s), {len(outcome.received[0])} bytes"
        )
    return problems


def dropped_at(outcome: FrameOutcome) -> str:
    """For a must-not-arrive case: where it was stopped, as far as we can tell."""
    if outcome.arrived:
        return "nowhere (it arrived)"
    if outcome.send_error:
        return f"the sender (kernel refused it: {outcome.send_error})"
    return "on the path (left the sender, never reached the receiver)"


def describe_outcome(outcome: FrameOutcome) -> str:
    lines = [
        f"case {outcome.case.name}: {outcome.case.why}",
        f"  frame: {len(outcome.case.frame)} bytes, marker {outcome.case.marker}",
        f"  sender: {'refused: ' + outcome.send_error if outcome.send_error else 'sent'}",
        f"  receiver: {len(outcome.received)} matching frame(s)"
        + (f", VLAN ids {outcome.vlan_ids()}" if outcome.received else ""),
        f"  noise ignored: {noise.describe(Counter(outcome.noise))}",
    ]
    return "\n".join(lines)

