"""``ovs-vsctl --format=json --data=json list``: on real outputs of both emulated labs (recorded in
``selftest/data/recorded/13_ovsdb_json``) the JSON tables give what the text ``show`` and ``get`` of the same run
give, plus the ofports; the live readers (the OVS layer's state, the vDPA evidence's port facts, preflight's DPDK
version) take them; and what is not OVSDB's JSON is kept, or refused when nothing is."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from vdpalab.config import load_lab
from vdpalab.errors import ParseError
from vdpalab.evidence import port_facts_reads, read_port_facts
from vdpalab.layers import LayerContext
from vdpalab.layers.preflight import DPDK_VERSION_ARGV, Preflight, PreflightState
from vdpalab.parsers import parse_to_json
from vdpalab.parsers._common import Unparsed
from vdpalab.parsers.ovs import (
    VSCTL_STATE_ARGV,
    Uuid,
    ovsdb_optional,
    ovsdb_row,
    ovsdb_set,
    ovsdb_tables,
    ovsdb_text_map,
    parse_ovsdb_list,
    parse_vsctl_show,
    parse_vsctl_state,
    vsctl_list_argv,
)
from vdpalab.testing.scripted import ScriptedHost, ScriptStep

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent
REC = Path(__file__).parent / "data" / "recorded" / "13_ovsdb_json"
OUTPUTS = Path(__file__).parent / "data" / "scripts" / "outputs"


# the recordings each test reads, by lab (full names: test_parsers_recorded checks that every file is read)
STATE = {"netns": "netns-ovs-vsctl-list-state-json.txt", "qemu": "qemu-ovs-vsctl-list-state-json.txt"}
SHOW = {"netns": "netns-ovs-vsctl-show.txt", "qemu": "qemu-ovs-vsctl-show.txt"}
OTHER_CONFIG = {"netns": "netns-ovs-vsctl-list-open_vswitch-other_config-json.txt",
                "qemu": "qemu-ovs-vsctl-list-open_vswitch-other_config-json.txt"}
PRETTY = {"netns": "netns-ovs-vsctl-pretty-list-interface-ens2f0-json.txt",
          "qemu": "qemu-ovs-vsctl-pretty-list-interface-ens2f0-json.txt"}
ALL_TABLES = {"netns": "netns-ovs-vsctl-list-all-tables-json.txt", "qemu": "qemu-ovs-vsctl-list-all-tables-json.txt"}
NO_ROW = {"netns": "netns-ovs-vsctl-list-interface-nosuch0-stderr.txt",
          "qemu": "qemu-ovs-vsctl-list-interface-nosuch0-stderr.txt"}
LABS = ["netns", "qemu"]


def rec(name: str) -> str:
    return (REC / name).read_text(encoding="utf-8")


def test_argv_lists_each_table_with_its_columns_in_one_call() -> None:
    assert vsctl_list_argv([("Open_vSwitch", ("other_config",)), ("Bridge", ())]) == [
        "ovs-vsctl", "--format=json", "--data=json", "--columns=other_config", "list", "Open_vSwitch",
        "--", "list", "Bridge",
    ]
    assert vsctl_list_argv([("Interface", ("name", "status"))], record="ens2f0_0")[-3:] == [
        "list", "Interface", "ens2f0_0"
    ]
    with pytest.raises(ValueError):
        vsctl_list_argv([("Bridge", ()), ("Port", ())], record="x")


@pytest.mark.parametrize("flavour", LABS)
def test_state_gives_what_show_gives_of_the_same_run(flavour: str) -> None:
    state = parse_vsctl_state(rec(STATE[flavour]))
    show = parse_vsctl_show(rec(SHOW[flavour]))
    assert state.show.uuid == show.uuid
    assert state.show.ovs_version is show.ovs_version is None  # the labs' databases are made by hand
    assert set(state.show.bridges) == set(show.bridges) == {"br30-ovs", "br31-ovs"}
    for name, bridge in show.bridges.items():
        listed = state.show.bridges[name]
        assert listed.datapath_type == bridge.datapath_type == "netdev"
        assert set(listed.ports) == set(bridge.ports)
        for pname, port in bridge.ports.items():
            for iname, iface in port.interfaces.items():
                got = listed.ports[pname].interfaces[iname]
                assert (got.type, got.options, got.error) == (iface.type, iface.options, iface.error)
                assert iface.ofport is None  # show does not print it
                assert got.ofport == (65534 if iname == name else 2 if iname.endswith("_0") else 1)
    config = ovsdb_text_map(ovsdb_row(rec(OTHER_CONFIG[flavour]))["other_config"])
    assert state.other_config == config
    assert len(parse_ovsdb_list(rec(STATE[flavour])).tables) == 4


def test_the_netns_lab_has_system_ports_and_its_other_config() -> None:
    state = parse_vsctl_state(rec("netns-ovs-vsctl-list-state-json.txt"))
    assert state.other_config == {"userspace-tso-enable": "true"}
    ens = state.show.bridges["br30-ovs"].ports["ens2f0"].interfaces["ens2f0"]
    assert (ens.type, ens.options) == (None, {})  # "" in the table, as show prints no type


def test_the_qemu_lab_has_dpdk_and_vhost_user_ports() -> None:
    state = parse_vsctl_state(rec("qemu-ovs-vsctl-list-state-json.txt"))
    assert state.other_config["dpdk-init"] == "true" and state.other_config["dpdk-socket-mem"] == "256"
    assert state.other_config["dpdk-extra"].split()[-1] == "--no-pci"
    br30 = state.show.bridges["br30-ovs"].ports
    assert br30["ens2f0"].interfaces["ens2f0"].options == {"dpdk-devargs": "net_af_packet0,iface=ens2f0"}
    guest = br30["ens2f0_0"].interfaces["ens2f0_0"]
    assert guest.type == "dpdkvhostuserclient"
    assert guest.options["vhost-server-path"].endswith("/guests/c77g153.vhost-user.sock")


@pytest.mark.parametrize("flavour", LABS)
def test_every_column_of_a_full_list_is_kept(flavour: str) -> None:
    names = ["Open_vSwitch", "Bridge", "Port", "Interface"]
    tables = ovsdb_tables(rec(ALL_TABLES[flavour]), names)
    top = tables["Open_vSwitch"].rows[0]
    assert set(top) == set(tables["Open_vSwitch"].headings)
    assert {"cur_cfg", "iface_types", "datapath_types"} <= set(top)
    assert isinstance(top["_uuid"], Uuid) and isinstance(top["cur_cfg"], int)
    assert top["dpdk_initialized"] is (flavour == "qemu")
    assert "netdev" in top["datapath_types"] and "internal" in top["iface_types"]
    assert ("dpdkvhostuserclient" in top["iface_types"]) is (flavour == "qemu")  # the DPDK build's port types
    bridges = sorted(r["name"] for r in tables["Bridge"].rows if r["_uuid"] in ovsdb_set(top["bridges"]))
    assert bridges == ["br30-ovs", "br31-ovs"]
    state = parse_vsctl_state(rec(STATE[flavour]))
    assert ovsdb_text_map(top["other_config"]) == state.other_config
    stats = {r["name"]: r["statistics"] for r in tables["Interface"].rows}
    assert stats["ens2f0"] and all(isinstance(v, int) for v in stats["ens2f0"].values())


def test_manager_table_and_the_show_block_of_the_same_run() -> None:
    manager = ovsdb_row(rec("netns-ovs-vsctl-list-manager-json.txt"))
    show = parse_vsctl_show(rec("netns-ovs-vsctl-show-manager.txt"))
    assert manager["target"] == "ptcp:16640:127.0.0.1" and manager["target"] in show.managers
    assert manager["is_connected"] is False and ovsdb_optional(manager["inactivity_probe"]) is None
    assert "Manager" not in rec("netns-ovs-vsctl-show.txt")  # recorded before set-manager


@pytest.mark.parametrize("flavour", LABS)
def test_pretty_output_is_the_same_table(flavour: str) -> None:
    pretty = parse_ovsdb_list(rec(PRETTY[flavour]))
    assert len(rec(PRETTY[flavour]).splitlines()) > 5
    (row,) = pretty.tables[0].rows
    compact = parse_vsctl_state(rec(STATE[flavour]))
    iface = compact.show.bridges["br30-ovs"].ports["ens2f0"].interfaces["ens2f0"]
    assert (row["name"], row["type"] or None, ovsdb_text_map(row["options"]), row["ofport"]) == (
        "ens2f0", iface.type, iface.options, iface.ofport
    )
    assert pretty.unparsed == []


def _port_host(answer: str, rc: int = 0) -> ScriptedHost:
    (argv,) = port_facts_reads("ens2f0_0")
    step = ScriptStep(shlex.join(argv), stdout=answer if rc == 0 else "", stderr=answer if rc else "", rc=rc)
    return ScriptedHost("host", [step])


def test_port_facts_read_status_and_statistics_as_get_printed_them() -> None:
    host = _port_host(rec("qemu-ovs-vsctl-list-interface-ens2f0_0-status-statistics-json.txt"))
    facts = read_port_facts(host, "ens2f0_0")
    host.assert_done()
    assert facts.status["status"] == "connected" and facts.status["mode"] == "client"
    assert facts.statistics["rx_packets"] == "0" and "tx_q0_good_packets" in facts.statistics
    netns = read_port_facts(_port_host(rec("netns-ovs-vsctl-list-interface-ens2f0_0-status-statistics-json.txt")),
                            "ens2f0_0")
    assert netns.status["driver_name"] == "veth" and netns.status["firmware_version"] == ""
    assert int(netns.statistics["rx_packets"]) > 0  # the recording's pings went through


@pytest.mark.parametrize("flavour", LABS)
def test_port_facts_of_a_port_ovs_does_not_have_are_empty(flavour: str) -> None:
    stderr = rec(NO_ROW[flavour])
    assert stderr.startswith('ovs-vsctl: no row "nosuch0" in table Interface')
    facts = read_port_facts(_port_host(stderr, rc=1), "ens2f0_0")
    assert (facts.status, facts.statistics) == ({}, {})
    with pytest.raises(ParseError):
        parse_ovsdb_list(stderr)


@pytest.mark.parametrize(
    "answer,version",
    [("qemu-ovs-vsctl-list-open_vswitch-dpdk_version-json.txt", "22.11.11"),
     ("netns-ovs-vsctl-list-open_vswitch-dpdk_version-json.txt", None)],
)
def test_preflight_takes_the_dpdk_version_from_the_table(answer: str, version: str | None, tmp_path: Path) -> None:
    lab = load_lab(ROOT / "labs" / "emulated-qemu.toml")
    ovs = (Path(__file__).parent / "data" / "emulated" / "ovs-version.txt").read_text()  # no DPDK line in it
    host = ScriptedHost("host", [
        ScriptStep(f"{lab.ovs.vswitchd_binary} --version", stdout=ovs),
        ScriptStep(shlex.join(DPDK_VERSION_ARGV), stdout=rec(answer)),
    ])
    state = PreflightState()
    Preflight(LayerContext(lab=lab, hosts={"host": host}, state_dir=tmp_path))._probe_ovs(state)
    host.assert_done()
    assert state.versions["dpdk"] == version
    assert bool(state.notes) is (version is None)  # "none" (OVS without DPDK) is no version


def test_seed_answers_match_the_seeds_text() -> None:
    """The derived seed answers (selftest/data/scripts/README.md) hold the facts of the seed's own text outputs."""
    seed = Path(__file__).parent / "data" / "seed"
    state = parse_vsctl_state((OUTPUTS / "ovs-vsctl-list-state-br30-br31-allow-a-json.txt").read_text())
    show = parse_vsctl_show((seed / "ovs-vsctl-show-br30-br31.txt").read_text())
    assert (state.show.uuid, state.show.ovs_version) == (show.uuid, show.ovs_version)
    for name, bridge in show.bridges.items():
        for pname, port in bridge.ports.items():
            for iname, iface in port.interfaces.items():
                got = state.show.bridges[name].ports[pname].interfaces[iname]
                assert (got.type, got.options, got.error) == (iface.type, iface.options, iface.error)
    empty = parse_vsctl_state((OUTPUTS / "ovs-vsctl-list-state-no-bridges-json.txt").read_text())
    assert (empty.show.bridges, empty.other_config, empty.show.uuid) == ({}, {}, show.uuid)


def test_parse_json_view_keeps_the_tables() -> None:
    out = parse_to_json("ovsdb-list", rec("netns-ovs-vsctl-list-state-json.txt"))
    assert [t["headings"][0] for t in out["tables"]] == ["_uuid"] * 4
    assert out["tables"][0]["rows"][0]["other_config"] == {"userspace-tso-enable": "true"}
    json.dumps(out)


def test_lines_that_are_no_document_are_kept_with_their_numbers() -> None:
    text = "$ ovs-vsctl --format=json list Bridge\n" + rec("netns-ovs-vsctl-list-state-json.txt") + "warning: x\n"
    listed = parse_ovsdb_list(text)
    assert len(listed.tables) == 4 and listed.tables[0].line == 2
    assert listed.unparsed == [Unparsed(1, "$ ovs-vsctl --format=json list Bridge"), Unparsed(6, "warning: x")]


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"data": [[1, 2]], "headings": ["a"]}\n', "row 0 does not have the 1 columns"),
        ('{"data": [[["set", [["set", []]]]]], "headings": ["a"]}\n', "is no OVSDB atom"),
        ('{"data": [], "headings": ["a", "a"]}\n', "distinct column names"),
        ('{"rows": []}\n', "expected a"),
        ("[1, 2]\n", "no ovs-vsctl --format=json list document"),
    ],
)
def test_a_document_that_is_not_ovsdbs_is_no_output(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as ei:
        parse_ovsdb_list(text)
    assert ei.value.line_no == 1
    kept = parse_ovsdb_list(text + rec("netns-ovs-vsctl-list-open_vswitch-other_config-json.txt"))
    assert kept.unparsed == [Unparsed(1, text.rstrip("\n"))] and len(kept.tables) == 1  # next to a real one: kept


def test_state_refuses_a_list_of_other_tables() -> None:
    with pytest.raises(ParseError, match="expected 4 tables"):
        parse_vsctl_state(rec("netns-ovs-vsctl-list-open_vswitch-other_config-json.txt"))
    lines = rec("netns-ovs-vsctl-list-state-json.txt").splitlines()
    with pytest.raises(ParseError, match="referenced but not listed"):
        parse_vsctl_state("\n".join([lines[0], lines[1], '{"data":[],"headings":["_uuid","name","interfaces"]}',
                                     lines[3]]) + "\n")
    assert shlex.join(VSCTL_STATE_ARGV).startswith("ovs-vsctl --format=json --data=json --columns=")
