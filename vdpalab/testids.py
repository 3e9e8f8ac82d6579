"""Names inside pytest node ids, shared by reports, compare and trend (one parser, no copies).

``tests_datapath/test_ping.py::test_flood_ping[emu-56B-a_to_b]`` is the check
``test_flood_ping`` with the parameter set ``56B-a_to_b`` on lab ``emu``.
"""

from __future__ import annotations


def check_name(test_id: str) -> str:
    """``tests_datapath/test_ping.py::test_flood_ping[emu-56B-a_to_b]`` -> ``test_flood_ping``."""
    return test_id.rsplit("::", 1)[-1].split("[", 1)[0]


def param_id(test_id: str, lab: str = "") -> str:
    """The parametrization id without the lab: ``56B-a_to_b`` (empty for an unparametrized test)."""
    name = test_id.rsplit("::", 1)[-1]
    if "[" not in name or not name.endswith("]"):
        return ""
    ident = name[name.index("[") + 1 : -1]
    if lab and ident == lab:
        return ""
    return ident.removeprefix(f"{lab}-") if lab else ident
