"""Preflight refuses to let bring-up touch a port that is not the lab's, or that keeps the host reachable.

Each case replays the seed host's preflight transcript with one answer changed, and checks the
refusal names the PF and the reason, and that nothing after preflight ran.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from vdpalab.bringup import BringUp
from vdpalab.config import Lab, load_lab
from vdpalab.errors import SafetyRefusal
from vdpalab.layers import LAYER_ORDER, LayerContext, LayerStatus, Preflight
from vdpalab.testing.scripted import ScriptedHost, ScriptStep
from vdpalab.testing.transcript import load_transcript

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).parent / "data" / "scripts"
OUTPUTS = SCRIPTS / "outputs"


@pytest.fixture()
def lab() -> Lab:
    return load_lab(ROOT / "labs" / "cx6dx-qemu.toml")


def preflight_steps(**answers: ScriptStep) -> list[ScriptStep]:
    """The seed host's preflight transcript, with the steps for the given commands answered differently."""
    steps = load_transcript(SCRIPTS / "seed-fresh" / "01-preflight.script")
    out = []
    for step in steps:
        for command, new in answers.items():
            if step.expect == command:
                step = new
        out.append(step)
    return out


def run_preflight(lab: Lab, steps: list[ScriptStep], tmp_path: Path) -> tuple[Preflight, ScriptedHost]:
    host = ScriptedHost("c83g155", steps)
    return Preflight(LayerContext(lab=lab, hosts={"host": host}, state_dir=tmp_path)), host


def ethtool_i(bus: str) -> str:
    return (OUTPUTS / "ethtool-i-ens2f0.txt").read_text().replace("bus-info: 0000:07:00.0", f"bus-info: {bus}")


def test_wrong_pci_for_a_netdev_name_is_refused(lab: Lab, tmp_path: Path) -> None:
    # ens2f0 was renamed onto another NIC: its bus-info is not the 0000:07:00.0 lab.toml names
    steps = preflight_steps(**{"ethtool -i ens2f0": ScriptStep("ethtool -i ens2f0", stdout=ethtool_i("0000:04:00.0"))})
    layer, host = run_preflight(
        lab, steps[: steps.index(next(s for s in steps if s.expect == "ethtool -i ens2f1"))], tmp_path
    )
    with pytest.raises(SafetyRefusal) as info:
        layer.verify()
    assert str(info.value) == (
        "layer preflight: PF ens2f0: lab.toml says pci 0000:07:00.0 but `ethtool -i ens2f0` reports bus-info "
        "0000:04:00.0; refusing to touch a port that may not be the one meant (fix pf.name or pf.pci in the lab file)"
    )
    host.assert_done()


def test_missing_netdev_is_refused(lab: Lab, tmp_path: Path) -> None:
    failing = ScriptStep("ethtool -i ens2f0", rc=71, stderr="Cannot get driver information: No such device\n")
    steps = preflight_steps(**{"ethtool -i ens2f0": failing})
    layer, _ = run_preflight(lab, steps, tmp_path)
    with pytest.raises(SafetyRefusal, match=r"PF ens2f0: cannot confirm it is PCI 0000:07:00.0: .*No such device"):
        layer.verify()


def test_pf_carrying_the_default_route_is_refused(lab: Lab, tmp_path: Path) -> None:
    route = ScriptStep("ip -j route show default", stdout_file=OUTPUTS / "ip-j-route-default-ens2f0.txt")
    layer, _ = run_preflight(lab, preflight_steps(**{"ip -j route show default": route}), tmp_path)
    with pytest.raises(SafetyRefusal) as info:
        layer.verify()
    assert "PF ens2f0: refusing to change its eswitch mode: it carries the host's default route" in str(info.value)
    assert "allow_management_pf" in str(info.value)


def test_pf_carrying_the_ssh_session_is_refused(lab: Lab, tmp_path: Path) -> None:
    ssh = ScriptStep("echo $SSH_CONNECTION", stdout="192.168.31.10 40022 192.168.31.155 22\n")
    addrs = ScriptStep("ip -j addr show", stdout_file=OUTPUTS / "ip-j-addr-show-c83g155-ens2f1-addressed.txt")
    layer, host = run_preflight(
        lab, preflight_steps(**{"echo $SSH_CONNECTION": ssh, "ip -j addr show": addrs}), tmp_path
    )
    with pytest.raises(SafetyRefusal) as info:
        layer.verify()
    assert (
        "PF ens2f1: refusing to change its eswitch mode: it carries 192.168.31.155, the address this SSH session "
        "came in on" in str(info.value)
    )
    host.assert_done()


def test_allow_management_pf_lets_it_pass_with_a_note(lab: Lab, tmp_path: Path) -> None:
    allowed = lab.model_copy(update={"host": lab.host.model_copy(update={"allow_management_pf": True})})
    route = ScriptStep("ip -j route show default", stdout_file=OUTPUTS / "ip-j-route-default-ens2f0.txt")
    layer, host = run_preflight(allowed, preflight_steps(**{"ip -j route show default": route}), tmp_path)
    evidence = layer.verify()
    host.assert_done()
    assert evidence.ok, evidence.summary
    assert (
        "note: PF ens2f0: it carries the host's default route (`ip -j route show default`); "
        "allowed by lab.host.allow_management_pf = true" in evidence.details
    )


def test_a_refusal_breaks_every_layer_and_nothing_changes(lab: Lab, tmp_path: Path) -> None:
    route = ScriptStep("ip -j route show default", stdout_file=OUTPUTS / "ip-j-route-default-ens2f0.txt")
    host = ScriptedHost("c83g155", preflight_steps(**{"ip -j route show default": route}))
    guests = {g: ScriptedHost(g, []) for g in ("c77g153", "c77g159")}
    outcomes = BringUp(lab, {"host": host, **guests}, tmp_path, keep_going=True).up()
    host.assert_done()  # the preflight probes, and not one command more
    assert outcomes["preflight"].status is LayerStatus.BROKEN
    assert outcomes["preflight"].reason.startswith("SafetyRefusal: layer preflight: PF ens2f0: refusing")
    for name in LAYER_ORDER[1:]:
        assert outcomes[name].status is LayerStatus.BROKEN
        assert outcomes[name].reason.startswith("requires "), outcomes[name].reason
    assert outcomes["sriov"].reason.startswith("requires preflight: SafetyRefusal")


def test_no_ssh_session_is_noted_not_refused(lab: Lab, tmp_path: Path) -> None:
    steps = preflight_steps(**{"echo $SSH_CONNECTION": ScriptStep("echo $SSH_CONNECTION", stdout="\n")})
    steps = [s for s in steps if s.expect != "ip -j addr show"]
    layer, host = run_preflight(lab, steps, tmp_path)
    evidence = layer.verify()
    host.assert_done()
    assert evidence.ok
    assert any("no SSH_CONNECTION" in d for d in evidence.details)


def test_under_sudo_the_ssh_sessions_come_from_ss(lab: Lab, tmp_path: Path) -> None:
    """sudo resets the environment, so $SSH_CONNECTION is empty: the SSH port's sessions are listed with ss."""
    sudo = "sudo -n sh -c "
    steps = []
    for step in preflight_steps():
        if step.expect == "echo $SSH_CONNECTION":
            steps.append(ScriptStep(sudo + "'echo $SSH_CONNECTION'", stdout="\n"))
            steps.append(
                ScriptStep(
                    sudo + "'ss -Htn state established '\"'\"'( sport = :22 )'\"'\"''",
                    stdout="0      0      [::ffff:192.168.31.155]:22      [::ffff:192.168.31.10]:40022\n",
                )
            )
        elif step.expect == "ip -j addr show":
            steps.append(
                ScriptStep(
                    sudo + "'ip -j addr show'", stdout_file=OUTPUTS / "ip-j-addr-show-c83g155-ens2f1-addressed.txt"
                )
            )
        else:
            steps.append(replace(step, expect=sudo + shlex.quote(str(step.expect))))
    host = ScriptedHost("c83g155", steps, needs_sudo=True, sudo=True)
    layer = Preflight(LayerContext(lab=lab, hosts={"host": host}, state_dir=tmp_path))
    with pytest.raises(
        SafetyRefusal, match=r"PF ens2f1: refusing to change its eswitch mode: it carries 192.168.31.155"
    ):
        layer.verify()
    host.assert_done()
