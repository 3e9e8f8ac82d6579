"""Hardware offload proves the guests' traffic is switched by the NIC, not by OVS's software datapath.

On a lab with ``ovs.hw_offload = true``, while guest a pings guest b,
``ovs-appctl dpctl/dump-flows type=offloaded`` must list a flow for each direction of
the guests' MAC pair (eth src/dst). With ``ovs.tc_policy = "skip_sw"`` the software
datapath (``type=ovs``) must count no packets for those MACs. The test decides from a probe
of the host, not from the lab file alone: OVS's ``other_config:hw-offload`` and each uplink's
``hw-tc-offload`` (ethtool -k). A host that can offload is tested whatever the lab file says;
a lab that wants offload on a host that cannot is a failure; it skips only when the lab says
no offload and the host agrees (the emulated labs). Recorded: the number of offloaded flows
found for the guests and the packets the software datapath counted for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fixtures.lab_session import GuestPair
from vdpalab.config import Lab
from vdpalab.errors import ParseError
from vdpalab.hosts.base import Host, run_json_or_text
from vdpalab.parsers.ethtool import parse_ethtool_k
from vdpalab.parsers.ovs import DumpFlows, Flow, ovsdb_row, ovsdb_text_map, parse_dump_flows, vsctl_list_argv
from vdpalab.traffic.jobs import WorkDir, start_job

pytestmark = [pytest.mark.datapath, pytest.mark.measures]
OTHER_CONFIG_ARGV = vsctl_list_argv([("Open_vSwitch", ("other_config",))])


def _flows(host: Host, kind: str) -> tuple[DumpFlows, str]:
    result = host.run(["ovs-appctl", "dpctl/dump-flows", "-m", f"type={kind}"], timeout=20)
    assert result.ok, f"dpctl/dump-flows type={kind} failed (rc={result.rc}): {result.stderr.strip()}"
    try:
        return parse_dump_flows(result.stdout), result.stdout
    except ParseError as exc:
        raise AssertionError(f"dpctl/dump-flows type={kind}: unreadable output: {exc}") from None


def _between(flows: DumpFlows, src: str, dst: str) -> list[Flow]:
    src, dst = src.lower(), dst.lower()
    return [f for f in flows.flows if f"src={src}" in f.match.lower() and f"dst={dst}" in f.match.lower()]


@dataclass(frozen=True)
class OffloadProbe:
    """What the host can do: OVS's hw-offload setting and each uplink's tc offload capability."""

    ovs_hw_offload: bool
    nic_tc_offload: dict[str, bool | None]  # uplink -> ethtool's hw-tc-offload (None: not reported)
    evidence: tuple[str, ...]

    @property
    def capable(self) -> bool:
        return self.ovs_hw_offload and all(self.nic_tc_offload.values())


def probe_offload(host: Host, lab: Lab) -> OffloadProbe:
    """Read OVS's other_config and ``ethtool -k`` of every bridge uplink on the host (read-only)."""
    evidence: list[str] = []
    result = host.run(OTHER_CONFIG_ARGV, timeout=15)
    try:
        other = ovsdb_text_map(ovsdb_row(result.stdout)["other_config"]) if result.ok else {}
    except (ParseError, KeyError) as exc:
        raise AssertionError(f"ovs-vsctl list Open_vSwitch other_config: unreadable output: {exc!r}") from None
    evidence.append(f"OVS other_config:hw-offload={other.get('hw-offload', '(unset)')}"
                    + ("" if result.ok else f" (ovs-vsctl rc={result.rc}: {result.stderr.strip()})"))
    tc: dict[str, bool | None] = {}
    for bridge in lab.bridge:
        uplink = bridge.uplink.name
        out = run_json_or_text(host, ["ethtool", "--json", "-k", uplink], ["ethtool", "-k", uplink], timeout=15)
        on = parse_ethtool_k(out.stdout).is_on("hw-tc-offload") if out.ok else None
        tc[uplink] = on
        evidence.append(f"ethtool -k {uplink}: hw-tc-offload "
                        + ({True: "on", False: "off"}.get(on, "not reported") if out.ok else f"rc={out.rc}"))
    return OffloadProbe(other.get("hw-offload") == "true", tc, tuple(evidence))


@pytest.mark.timeout(120)
def test_offloaded_flows(lab: Lab, lab_host: Host, guests: GuestPair, record) -> None:
    probe = probe_offload(lab_host, lab)
    record.attach("offload probe", "\n".join(probe.evidence))
    if not probe.capable:
        seen = "; ".join(probe.evidence)
        assert not lab.ovs.hw_offload, f"the lab wants hw-offload (ovs.hw_offload=true) but the host cannot: {seen}"
        pytest.skip(f"no hw-offload here: the lab says ovs.hw_offload=false and the host agrees ({seen})")
    a, b = guests.a, guests.b
    workdir = WorkDir.create(a.host, "vdpalab-offload")
    job = start_job(a.host, "ping", ["ping", "-i", "0.01", "-c", "2000", "-w", "30", b.address], workdir)
    try:
        job.wait_for(lambda: "bytes from" in job.stdout(), 10.0, "receiving replies")
        offloaded, off_text = _flows(lab_host, "offloaded")
        software, sw_text = _flows(lab_host, "ovs")
    finally:
        job.stop()
        workdir.remove()
    record.attach("dpctl/dump-flows -m type=offloaded", off_text)
    record.attach("dpctl/dump-flows -m type=ovs", sw_text)
    problems: list[str] = []
    found = 0
    for src, dst in ((a, b), (b, a)):
        flows = _between(offloaded, src.settings.mac, dst.settings.mac)
        found += len(flows)
        if not flows:
            problems.append(f"no offloaded flow for {src.name} ({src.settings.mac}) -> {dst.name} ({dst.settings.mac}) "
                            f"among {len(offloaded.flows)} offloaded flow(s)")
    record("offloaded_guest_flows", found, "flows", params={"tc_policy": lab.ovs.tc_policy or "default"},
           better="higher")
    sw_packets = sum(f.packets for src, dst in ((a, b), (b, a))
                     for f in _between(software, src.settings.mac, dst.settings.mac))
    record("software_datapath_packets", sw_packets, "packets", params={"tc_policy": lab.ovs.tc_policy or "default"},
           better="lower")
    if lab.ovs.tc_policy == "skip_sw" and sw_packets:
        problems.append(f"tc-policy=skip_sw but the software datapath counted {sw_packets} packet(s) for the guests")
    assert not problems, "\n".join(problems)
