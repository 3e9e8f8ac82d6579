"""BringUp: one run per layer, broken layers make their dependants BROKEN with "requires" reasons,
nothing is retried, down keeps going, and the emulated lab's missing hardware is NOT_APPLICABLE."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from vdpalab.bringup import BringUp
from vdpalab.config import Lab, load_lab
from vdpalab.layers import LAYER_ORDER, LayerStatus, layer_order
from vdpalab.parsers.ovs import VSCTL_STATE_ARGV
from vdpalab.testing.scripted import ScriptedHost, ScriptStep
from vdpalab.testing.transcript import load_transcript, scripted_host

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).parent / "data" / "scripts"
FRESH = SCRIPTS / "seed-fresh"
RECORDED_OVSDB = Path(__file__).parent / "data" / "recorded" / "13_ovsdb_json"


@pytest.fixture()
def lab() -> Lab:
    return load_lab(ROOT / "labs" / "cx6dx-qemu.toml")


@pytest.fixture()
def emulated() -> Lab:
    return load_lab(ROOT / "lab.toml")


def steps(*names: str) -> list[ScriptStep]:
    out: list[ScriptStep] = []
    for name in names:
        out += load_transcript(FRESH / name)
    return out


def until(all_steps: list[ScriptStep], command: str, replacement: ScriptStep) -> list[ScriptStep]:
    """The steps up to ``command``, which is answered by ``replacement`` (the layer stops there)."""
    index = next(i for i, s in enumerate(all_steps) if s.expect == command)
    return [*all_steps[:index], replacement]


def guests() -> dict[str, ScriptedHost]:
    return {g: ScriptedHost(g, []) for g in ("c77g153", "c77g159")}


def test_broken_layer_makes_dependants_broken_and_nothing_is_retried(lab: Lab, tmp_path: Path) -> None:
    failing = ScriptStep(
        "echo 1 > /sys/class/net/ens2f0/device/sriov_numvfs",
        rc=1,
        stderr="sh: echo: write error: Cannot allocate memory\n",
    )
    host = ScriptedHost(
        "c83g155",
        until(steps("01-preflight.script", "02-hugepages.script", "03-sriov.script"), failing.expect, failing),
    )
    bring = BringUp(lab, {"host": host, **guests()}, tmp_path, keep_going=True)
    outcomes = bring.up()
    host.assert_done()  # the failing write ran once; no retry, no later layer touched the host
    assert host.executed.count(failing.expect) == 1
    sriov = outcomes["sriov"]
    assert sriov.status is LayerStatus.BROKEN
    assert sriov.reason == (
        "LayerError: layer sriov: 'echo 1 > /sys/class/net/ens2f0/device/sriov_numvfs' on c83g155 exited with rc=1: "
        "sh: echo: write error: Cannot allocate memory"
    )
    assert sriov.commands_run == ["host: echo 1 > /sys/class/net/ens2f0/device/sriov_numvfs"]
    assert outcomes["preflight"].status is outcomes["hugepages"].status is LayerStatus.UP
    assert outcomes["switchdev"].reason == f"requires sriov: {sriov.reason}"
    assert outcomes["vdpa"].reason == f"requires sriov: {sriov.reason}"
    assert outcomes["ovs"].reason == f"requires switchdev: requires sriov: {sriov.reason}"
    assert outcomes["guests"].reason == f"requires vdpa: requires sriov: {sriov.reason}"
    for name in ("switchdev", "vdpa", "ovs", "guests"):
        assert outcomes[name].status is LayerStatus.BROKEN
        assert outcomes[name].commands_run == []
    assert bring.skip_reason("guests") == f"layer guests broken: requires vdpa: requires sriov: {sriov.reason}"
    assert bring.skip_reason("hugepages") is None
    # the journal kept what must be undone: sriov had recorded ens2f0's VF count before writing
    assert (tmp_path / "journal" / "sriov.json").exists()


def vdpa_broken_steps() -> list[ScriptStep]:
    failing = ScriptStep("modprobe vhost_vdpa", rc=1, stderr="modprobe: FATAL: Module vhost_vdpa not found.\n")
    before = steps(
        "01-preflight.script", "02-hugepages.script", "03-sriov.script", "04-switchdev.script", "05-vdpa.script"
    )
    return until(before, "modprobe vhost_vdpa", failing)


def test_keep_going_runs_layers_whose_requirements_hold(lab: Lab, tmp_path: Path) -> None:
    host = ScriptedHost("c83g155", vdpa_broken_steps() + steps("06-ovs.script"))
    outcomes = BringUp(lab, {"host": host, **guests()}, tmp_path, keep_going=True).up()
    host.assert_done()
    assert outcomes["vdpa"].status is LayerStatus.BROKEN
    assert outcomes["ovs"].status is LayerStatus.UP  # ovs needs switchdev and hugepages, not vdpa
    assert outcomes["guests"].reason.startswith("requires vdpa: LayerError: layer vdpa: 'modprobe vhost_vdpa'")


def test_without_keep_going_bringup_stops_at_the_first_broken_layer(lab: Lab, tmp_path: Path) -> None:
    host = ScriptedHost("c83g155", vdpa_broken_steps())
    outcomes = BringUp(lab, {"host": host, **guests()}, tmp_path).up()
    host.assert_done()
    vdpa_reason = outcomes["vdpa"].reason
    assert outcomes["ovs"].status is LayerStatus.BROKEN
    assert outcomes["ovs"].reason == f"not run: layer vdpa broke first ({vdpa_reason})"
    assert outcomes["guests"].reason == f"requires vdpa: {vdpa_reason}"
    assert list(outcomes) == list(layer_order(lab))  # every layer has an outcome, the unrun ones too


def test_a_verify_failure_is_broken_with_its_evidence(lab: Lab, tmp_path: Path) -> None:
    # hugepages on the kernel command line, but only 8 of 16 free: verify-only layer explains the fix
    meminfo = (
        (ROOT / "selftest/data/seed/meminfo-grep-huge.txt")
        .read_text()
        .replace("HugePages_Free:       16", "HugePages_Free:        8")
    )
    meminfo = meminfo.replace("HugePages_Total:      16", "HugePages_Total:       8")
    answers = {"cat /proc/meminfo": ScriptStep("cat /proc/meminfo", stdout=meminfo)}
    host_steps = [
        answers.get(s.expect, s) if isinstance(s.expect, str) else s
        for s in steps("01-preflight.script", "02-hugepages.script")
    ]
    host = ScriptedHost("c83g155", host_steps)
    outcomes = BringUp(lab, {"host": host, **guests()}, tmp_path, layers=["preflight", "hugepages"]).up()
    host.assert_done()
    hp = outcomes["hugepages"]
    assert hp.status is LayerStatus.BROKEN
    assert hp.reason == (
        "verify failed: only 8 of 8 1G hugepages free, 16 needed (reserve_at_runtime = false: reserve them on the "
        "kernel command line, e.g. default_hugepagesz=1G hugepagesz=1G hugepages=16, and reboot; seed 2-1)"
    )
    assert hp.evidence is not None and not hp.evidence.ok


def test_assume_up_only_verifies(lab: Lab, tmp_path: Path) -> None:
    verify_only = steps("01-preflight.script") + load_transcript(FRESH / "02-hugepages.script")[2:]
    host = ScriptedHost("c83g155", verify_only)
    outcomes = BringUp(lab, {"host": host, **guests()}, tmp_path, layers=["preflight", "hugepages"]).up(assume_up=True)
    host.assert_done()
    assert [o.status for o in outcomes.values()] == [LayerStatus.UP, LayerStatus.UP]


def test_emulated_lab_has_no_sriov_switchdev_or_vdpa(emulated: Lab, tmp_path: Path) -> None:
    bring = BringUp(emulated, {}, tmp_path, layers=["sriov", "switchdev", "vdpa"])
    assert bring.not_applicable() == {
        "sriov": "no SR-IOV NIC: no PF asking for VFs has a PCI address in the lab (ens2f0, ens2f1)",
        "switchdev": "no PF in the lab has switchdev = true",
        "vdpa": "vdpa.enabled = false in the lab",
    }
    outcomes = bring.up()  # no host is touched: there is none in the mapping
    for name, outcome in outcomes.items():
        assert outcome.status is LayerStatus.NOT_APPLICABLE
        assert outcome.reason == bring.not_applicable()[name]
        assert bring.skip_reason(name) == f"layer {name} not available: {outcome.reason}"
    assert bring.down() == {}  # nothing to take down either


def test_not_applicable_requirements_do_not_block(emulated: Lab, tmp_path: Path) -> None:
    """ovs requires switchdev; in the emulated lab switchdev is NOT_APPLICABLE, which is not broken."""
    # the netns lab's real answer (recorded from this lab.toml): its bridges with veth system ports, its other_config
    state = ScriptStep(shlex.join(VSCTL_STATE_ARGV), stdout_file=RECORDED_OVSDB / "netns-ovs-vsctl-list-state-json.txt")
    host = ScriptedHost("c83g155", [state, state])  # up's probe, verify's probe
    outcomes = BringUp(emulated, {"host": host}, tmp_path, layers=["switchdev", "ovs"]).up()
    host.assert_done()
    assert outcomes["switchdev"].status is LayerStatus.NOT_APPLICABLE
    assert outcomes["ovs"].status is LayerStatus.UP, outcomes["ovs"].reason


def test_down_keeps_going_and_collects_errors(lab: Lab, tmp_path: Path) -> None:
    hosts = {
        "host": scripted_host("c83g155", FRESH / "host.script"),
        "c77g153": scripted_host("c77g153", FRESH / "c77g153.script"),
        "c77g159": scripted_host("c77g159", FRESH / "c77g159.script"),
    }
    BringUp(lab, hosts, tmp_path).up()
    down_steps = load_transcript(SCRIPTS / "seed-down" / "host.script")
    broken = []
    skip_rest_of_ovs = False
    for step in down_steps:
        if step.expect == "ovs-vsctl del-br br31-ovs":
            broken.append(ScriptStep(step.expect, rc=1, stderr="ovs-vsctl: no bridge named br31-ovs\n"))
            skip_rest_of_ovs = True
            continue
        if skip_rest_of_ovs and str(step.expect).startswith(("ovs-vsctl", "systemctl")):
            continue
        broken.append(step)
    host = ScriptedHost("c83g155", broken)
    bring = BringUp(lab, {"host": host, **guests()}, tmp_path)
    errors = bring.down()
    host.assert_done()  # vdpa, switchdev and sriov still restored their parts
    assert errors == {
        "ovs": "LayerError: layer ovs: 'ovs-vsctl del-br br31-ovs' on c83g155 exited with rc=1: "
        "ovs-vsctl: no bridge named br31-ovs"
    }
    assert (tmp_path / "journal" / "ovs.json").exists()  # kept, so a second down can finish the job
    assert not (tmp_path / "journal" / "sriov.json").exists()
    assert bring.outcomes["sriov"].status is LayerStatus.DOWN
    assert "ovs" not in bring.outcomes or bring.outcomes["ovs"].status is not LayerStatus.DOWN


def test_unknown_layer_names_are_refused(lab: Lab, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown layer"):
        BringUp(lab, {}, tmp_path, layers=["preflight", "nics"])


def test_layer_order_is_the_seeds() -> None:
    assert LAYER_ORDER == ("preflight", "hugepages", "sriov", "switchdev", "vdpa", "ovs", "guests")
