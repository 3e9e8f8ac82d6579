"""Bad input: for every KIND a garbled line is kept in ``unparsed`` with its number (or, in one JSON or
XML document, raises ParseError at that line: the text is then no longer the tool's output), a paste
cut mid-line where a value must follow raises, and (hypothesis) no input whatsoever may make a parser
fail with anything but ParseError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vdpalab.errors import ParseError
from vdpalab.parsers import PARSERS
from vdpalab.parsers._common import Unparsed, looks_like_json

pytestmark = pytest.mark.selftest

DATA = Path(__file__).parent / "data"
GARBAGE = "\x07garbage ### 12ab !!"

# KIND: (real sample, line replaced by garbage, [(line, column) where a paste is cut], ...)
# The cut points are mid-line places a parser can notice (an open bracket or quote, a key without
# its value, a header/row mismatch); a cut inside a number is not detectable and is not claimed.
CASES: dict[str, tuple[str, int, list[tuple[int, int]]]] = {
    "dump-ports": ("seed/ovs-ofctl-of14-dump-ports-br30-ovs.txt", 3, [(26, 60), (9, 40), (2, 40)]),
    "vsctl-show": ("seed/ovs-vsctl-show-br30.txt", 5, [(10, 40), (12, 20)]),
    "other-config": ("seed/ovs-vsctl-get-other-config.txt", 1, [(1, 50), (1, 170)]),
    "ovsdb-list": ("recorded/13_ovsdb_json/netns-ovs-vsctl-list-state-json.txt", 3, [(4, 200), (2, 60), (1, 30)]),
    "dump-flows": ("recorded/11_found_by_search/ovs-dpctl-dump-flows-m-type-offloaded-ct-nat-sriov-operator.txt", 2,
                   [(1, 200), (2, 440)]),
    "ping": ("seed/ping-f-c77g153-to-c77g159.txt", 1, [(5, 30), (4, 20), (3, 20)]),
    "iperf3": ("recorded/07_iperf/iperf3-3.9-J-tcp-10s-omit3-retransmits-json.txt", 10, [(100, 5), (400, 3)]),
    "iperf2-csv": ("recorded/07_iperf/iperf2-yC-2.19plus-15field-tzprefix-k8s-csv.txt", 2, [(8, 40)]),
    "meminfo": ("recorded/08_host_info/proc-meminfo-full-jc-fixture-no-hugepages.txt", 3, [(51, 8), (20, 11)]),
    "cmdline": ("recorded/08_host_info/proc-cmdline-osp16-dpdk-compute-el8.txt", 2, [(1, 300)]),
    "mounts": ("seed/proc-mounts-grep-hugetlbfs.txt", 1, [(1, 30)]),
    "lsmod": ("seed/lsmod-grep-vd-after-modprobe.txt", 2, [(7, 10)]),
    "ls-l": ("seed/ls-Fal-sys-vhost_vdpa-after-modprobe.txt", 3, [(8, 45), (5, 30)]),
    "ethtool-k": ("emulated/ethtool-k-veth.txt", 5, [(10, 10), (12, 25)]),
    "ethtool-i": ("recorded/11_found_by_search/ethtool-i-mlx5_core-ofed24.10-cx4lx.txt", 2, [(10, 15), (6, 22)]),
    "ip-link": ("recorded/08_host_info/ip-d-link-show-vf-MAC-legacy-wangjun-tips.txt", 2, [(6, 60), (6, 20), (1, 40)]),
    "ip-addr": ("recorded/13_json_netns_lab/guest-ip-addr-show.txt", 3, [(9, 23), (7, 30)]),
    "ip-neigh": ("recorded/13_json_netns_lab/machine-ip-neigh-show.txt", 2, [(1, 27), (1, 20)]),
    "lshw": ("seed/lshw-businfo-network-legacy.txt", 5, [(12, 25), (12, 36)]),
    "devlink-eswitch": ("seed/devlink-eswitch-show-07.00.0-switchdev.txt", 1, [(1, 55), (1, 25)]),
    "devlink-port": ("recorded/04_devlink/port-show-physical-pcipf-external-iproute2-fbd4b581.txt", 2, [(2, 75)]),
    "devlink-info": ("recorded/04_devlink/dev-info-nfp-text-iproute2-05bc89e9.txt", 3, [(20, 17)]),
    "vdpa-mgmtdev": ("recorded/11_found_by_search/vdpa-mgmtdev-show-vdpasim_net-features-20220922024305.txt", 2,
                     [(3, 20), (2, 5)]),
    "vdpa-dev": ("recorded/05_vdpa/dev-show-foo2-iproute2-c2ecc82b.txt", 1, [(1, 50)]),
    "vdpa-config": ("recorded/11_found_by_search/vdpa-dev-config-show-negotiated-features-20220922024305.txt", 1,
                    [(1, 40), (1, 20)]),
    "vdpa-vstats": ("recorded/11_found_by_search/vdpa-dev-vstats-show-qidx16-iproute2-20220615034616.txt", 1,
                    [(1, 50)]),
    "kernel-log": ("seed/var-log-messages-guest-start.txt", 3, []),
    "libvirt-xml": ("recorded/10_libvirt_qemu/libvirt-tests-net-vdpa-domain-xml.txt", 5, [(20, 10), (3, 30)]),
    "qemu-cmdline": ("recorded/10_libvirt_qemu/libvirt-tests-net-vdpa-qemu-args-json-netdev-args.txt", 12,
                     [(31, 40), (12, 60)]),
}


def sample(kind: str) -> str:
    return (DATA / CASES[kind][0]).read_text(encoding="utf-8")


def test_every_kind_has_cases() -> None:
    assert set(CASES) == set(PARSERS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_sample_parses(kind: str) -> None:
    assert PARSERS[kind].parse(sample(kind)) is not None


# KINDs whose sample is one document: a garbled line makes it invalid JSON/XML, i.e. not the tool's output
DOCUMENTS = {"iperf3", "libvirt-xml"}
INSERTED = {"cmdline", "other-config", "vdpa-dev", "vdpa-vstats", "vdpa-config", "devlink-eswitch", "mounts"}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_garbled_line_is_kept_with_its_number(kind: str) -> None:
    lines = sample(kind).split("\n")
    garbled_at = CASES[kind][1]
    if kind in INSERTED:  # the sample's line is its only record: the garbage arrives as an extra line
        lines.insert(garbled_at - 1, GARBAGE)
    else:
        lines[garbled_at - 1] = GARBAGE
    text = "\n".join(lines)
    if kind in DOCUMENTS:
        with pytest.raises(ParseError) as ei:
            PARSERS[kind].parse(text)
        assert ei.value.kind == kind and ei.value.line_no == garbled_at and f"at line {garbled_at}" in str(ei.value)
        return
    result = PARSERS[kind].parse(text)
    assert Unparsed(garbled_at, GARBAGE) in result.unparsed
    assert {"line": garbled_at, "text": GARBAGE} in PARSERS[kind].to_json(result)["unparsed"]


@pytest.mark.parametrize("kind,cut", [(k, c) for k in sorted(CASES) for c in CASES[k][2]])
def test_paste_cut_mid_line_raises(kind: str, cut: tuple[int, int]) -> None:
    line_no, col = cut
    lines = sample(kind).split("\n")
    assert 0 < col < len(lines[line_no - 1].rstrip()), "the cut must fall inside the line"
    text = "\n".join([*lines[: line_no - 1], lines[line_no - 1][:col]])
    with pytest.raises(ParseError) as ei:
        PARSERS[kind].parse(text)
    assert ei.value.kind == kind
    if kind not in ("iperf3",):  # JSON: the decoder's position, which may be the following line
        assert ei.value.line_no == line_no


def test_truncated_journal_json_line() -> None:
    text = (DATA / "emulated/journalctl-json-seed-records-json.txt").read_text()
    first = text.split("\n")[0]
    with pytest.raises(ParseError) as ei:
        PARSERS["kernel-log"].parse(first[:120])
    assert ei.value.line_no == 1


def test_empty_input_is_an_error_except_for_dump_flows() -> None:
    for kind, spec in PARSERS.items():
        if kind == "dump-flows":  # "no flows" is a real, empty answer
            assert spec.parse("").flows == []
            continue
        with pytest.raises(ParseError):
            spec.parse("")
        with pytest.raises(ParseError):
            spec.parse(" \n\n")


# --------------------------------------------------------------------------------- properties
KINDS = sorted(PARSERS)
_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_parse_error(kind: str, text: str) -> None:
    try:
        result = PARSERS[kind].parse(text)
    except ParseError:
        return
    PARSERS[kind].to_json(result)  # whatever parses must also serialise


@_SETTINGS
@given(kind=st.sampled_from(KINDS), text=st.text(max_size=400))
def test_random_text_never_crashes(kind: str, text: str) -> None:
    _only_parse_error(kind, text)


@_SETTINGS
@given(kind=st.sampled_from(KINDS), data=st.binary(max_size=400))
def test_random_bytes_never_crash(kind: str, data: bytes) -> None:
    _only_parse_error(kind, data.decode("utf-8", errors="replace"))


_ALPHABET = st.sampled_from(list(" \t\n,:=()[]{}\"'\\-/.0123456789?xyzZ#$|>&<^C"))


@_SETTINGS
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_mutated_real_samples_never_crash(kind: str, data: st.DataObject) -> None:
    text = sample(kind)
    cut = data.draw(st.integers(0, len(text)), label="cut")
    pos = data.draw(st.integers(0, len(text)), label="pos")
    junk = data.draw(st.text(alphabet=_ALPHABET, max_size=8), label="junk")
    mutated = (text[:pos] + junk + text[pos:])[: cut + len(junk)]
    _only_parse_error(kind, mutated)


@_SETTINGS
@given(kind=st.sampled_from([k for k in KINDS if k not in DOCUMENTS]), data=st.data())
def test_a_foreign_line_in_a_real_sample_is_kept_not_fatal(kind: str, data: st.DataObject) -> None:
    """Any line that is no output of the tool, inserted anywhere after the first line of a complete
    real sample (it ends with a newline), is kept in ``unparsed`` with its number; the rest still parses."""
    text = sample(kind)
    if looks_like_json(text):
        return  # a JSON document with a foreign line in it is no longer the tool's output
    lines = text.rstrip("\n").split("\n")
    at = data.draw(st.integers(1, len(lines)), label="after line")
    junk = "\x07" + data.draw(st.text(alphabet=_ALPHABET, max_size=30), label="junk").replace("\n", " ")
    mutated = "\n".join([*lines[:at], junk, *lines[at:]]) + "\n"
    result = PARSERS[kind].parse(mutated)
    assert Unparsed(at + 1, junk) in result.unparsed


# OVSDB's JSON (``ovs-vsctl --format=json --data=json list``): atoms, references, sets and maps as OVS prints them
_ATOM = st.one_of(st.text(max_size=12), st.integers(-(2**63), 2**63 - 1), st.booleans(),
                  st.floats(allow_nan=False), st.uuids().map(lambda u: ["uuid", str(u)]))
_CELL = st.one_of(_ATOM, st.lists(_ATOM, max_size=4).map(lambda xs: ["set", xs]),
                  st.lists(st.tuples(_ATOM, _ATOM), max_size=4).map(lambda kv: ["map", [list(p) for p in kv]]))


def _decoded(cell: object) -> object:
    """What the parser must make of a cell: a reference its UUID, a set a list, a map a dict."""
    if isinstance(cell, list) and cell[0] == "uuid":
        return cell[1]
    if isinstance(cell, list) and cell[0] == "set":
        return [_decoded(a) for a in cell[1]]
    if isinstance(cell, list):
        return {_decoded(k): _decoded(v) for k, v in cell[1]}
    return cell


@_SETTINGS
@given(headings=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4, unique=True), data=st.data(),
       tables=st.integers(1, 3))
def test_ovsdb_list_reads_back_any_table_ovs_could_print(headings: list[str], data: st.DataObject,
                                                         tables: int) -> None:
    docs = [{"data": data.draw(st.lists(st.lists(_CELL, min_size=len(headings), max_size=len(headings)),
                                        max_size=3)), "headings": headings} for _ in range(tables)]
    text = "".join(json.dumps(doc, separators=(",", ":")) + "\n" for doc in docs)
    listed = PARSERS["ovsdb-list"].parse(text)
    assert listed.unparsed == [] and [t.line for t in listed.tables] == list(range(1, tables + 1))
    for doc, table in zip(docs, listed.tables, strict=True):
        assert table.rows == [{h: _decoded(c) for h, c in zip(headings, row, strict=True)} for row in doc["data"]]


@_SETTINGS
@given(data=st.data())
def test_a_foreign_line_between_ovsdb_documents_is_kept(data: st.DataObject) -> None:
    """The JSON samples are skipped by the test above; one document a line is not one document: a foreign line
    between (or after) them is kept with its number and every document still reads."""
    lines = sample("ovsdb-list").rstrip("\n").split("\n")
    at = data.draw(st.integers(1, len(lines)), label="after line")
    junk = "\x07" + data.draw(st.text(alphabet=_ALPHABET, max_size=30), label="junk").replace("\n", " ")
    result = PARSERS["ovsdb-list"].parse("\n".join([*lines[:at], junk, *lines[at:]]) + "\n")
    assert result.unparsed == [Unparsed(at + 1, junk)] and len(result.tables) == len(lines)
