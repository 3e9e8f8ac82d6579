"""``junit.xml`` for CI dashboards (Jenkins, GitLab, GitHub test reporters).

One <testsuite> per lab (tests without a lab go to "vdpalab"); the run id, status, suite
revision and every lab's fingerprint are <properties>; each test's metrics are testcase
<properties>; failures/errors/skips carry their message; diagnostics go to <system-out>.
"""

from __future__ import annotations

import os
import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from vdpalab.results import RunRecord, TestOutcome, iso

_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: object) -> str:
    """XML 1.0 cannot hold most control characters: replace them (a dmesg dump may contain some)."""
    return _ILLEGAL_XML.sub("\ufffd", "" if text is None else str(text))


def split_test_id(test_id: str) -> tuple[str, str]:
    """``tests_datapath/test_ping.py::TestFlood::test_loss[emu-56]`` -> (classname, name) as pytest does."""
    parts = test_id.split("::")
    if len(parts) == 1:
        return "", test_id
    module = parts[0].removesuffix(".py").replace("/", ".").replace("\\", ".")
    return ".".join([module, *parts[1:-1]]), parts[-1]


def _diagnostics_text(outcome: TestOutcome) -> str:
    blocks = []
    for name, text in outcome.diagnostics.items():
        blocks.append(f"----- {name} -----\n{text.rstrip()}\n")
    return "\n".join(blocks)


def build_junit(run: RunRecord) -> ET.ElementTree:
    root = ET.Element("testsuites", name=f"vdpalab {run.run_id}")
    by_lab: dict[str, list[TestOutcome]] = {}
    for o in run.outcomes:
        by_lab.setdefault(o.lab or "vdpalab", []).append(o)
    if not by_lab:
        by_lab["vdpalab"] = []
    for rec in run.teardown_failures:  # a failed restore is part of the verdict: an error of its own
        by_lab.setdefault(rec.lab or "vdpalab", []).append(TestOutcome(
            f"vdpalab/teardown::{rec.layer}", "error", message=f"teardown of {rec.layer} failed: {rec.reason}",
            lab=rec.lab))
    results_by_test: dict[tuple[str, str], list] = {}
    for r in run.results:
        results_by_test.setdefault((r.lab or "vdpalab", r.test_id), []).append(r)
    verdicts_by_test: dict[tuple[str, str], list] = {}
    for v in run.verdicts:
        verdicts_by_test.setdefault((v.lab or "vdpalab", v.test_id), []).append(v)
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for lab, outcomes in sorted(by_lab.items()):
        counts = {
            "tests": len(outcomes),
            "failures": sum(o.outcome == "failed" for o in outcomes),
            "errors": sum(o.outcome == "error" for o in outcomes),
            "skipped": sum(o.outcome == "skipped" for o in outcomes),
        }
        suite_time = sum(o.duration for o in outcomes)
        for k, n in counts.items():
            totals[k] += n
        total_time += suite_time
        fingerprint = run.fingerprints.get(lab)
        suite = ET.SubElement(root, "testsuite", {
            "name": lab, "timestamp": iso(run.started),
            "hostname": _clean((fingerprint.host if fingerprint else None) or socket.gethostname()),
            "time": f"{suite_time:.3f}", **{k: str(n) for k, n in counts.items()},
        })
        props = ET.SubElement(suite, "properties")

        def prop(name: str, value: object, parent: ET.Element = props) -> None:
            ET.SubElement(parent, "property", name=name, value=_clean("" if value is None else value))

        prop("run_id", run.run_id)
        prop("run_status", run.status)
        prop("started", iso(run.started))
        prop("ended", iso(run.ended))
        prop("suite_revision", run.suite_revision)
        prop("pytest_args", " ".join(run.pytest_args))
        fp = run.fingerprints.get(lab)
        if fp is not None:
            prop("lab", fp.lab)
            prop("host", fp.host)
            for component, version in fp.ordered():
                prop(f"fingerprint.{component}", version if version is not None else "unknown")
        for o in sorted(outcomes, key=lambda o: o.test_id):
            classname, name = split_test_id(o.test_id)
            case = ET.SubElement(suite, "testcase", classname=_clean(classname), name=_clean(name),
                                 time=f"{o.duration:.3f}")
            metrics = results_by_test.get((lab, o.test_id), [])
            verdicts = verdicts_by_test.get((lab, o.test_id), [])
            if metrics or verdicts:
                case_props = ET.SubElement(case, "properties")
                for r in metrics:
                    suffix = f"[{r.params_key}]" if r.params else ""
                    trial = f"#{r.trial}" if r.trial else ""
                    prop(f"metric.{r.name}{suffix}{trial}", f"{r.value:.6g} {r.unit}".strip(), case_props)
                for v in verdicts:
                    suffix = f"[{v.params_key}]" if v.params else ""
                    limit = "n/a" if v.limit is None else f"{v.limit:.6g}"
                    seen = "n/a" if v.seen is None else f"{v.seen:.6g}"
                    prop(f"verdict.{v.kind}.{v.metric}{suffix}",
                         f"{v.status}: measured {seen} {v.unit}, limit {limit} ({v.direction or '?'} is better; "
                         f"{v.source})", case_props)
            message = _clean(o.message.splitlines()[0][:1000] if o.message else o.outcome)
            if o.outcome == "failed":
                ET.SubElement(case, "failure", message=message, type="AssertionError").text = _clean(o.message)
            elif o.outcome == "error":
                ET.SubElement(case, "error", message=message, type="Error").text = _clean(o.message)
            elif o.outcome == "skipped":
                ET.SubElement(case, "skipped", message=message, type="pytest.skip")
            diag = _diagnostics_text(o)
            if diag:
                ET.SubElement(case, "system-out").text = _clean(diag)
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", str(totals["errors"]))
    root.set("skipped", str(totals["skipped"]))
    root.set("time", f"{total_time:.3f}")
    tree = ET.ElementTree(root)
    ET.indent(tree, space="  ")
    return tree


def write_junit(run: RunRecord, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    build_junit(run).write(path, encoding="utf-8", xml_declaration=True)
    return path
