"""JUnit XML of run reports for CI: one <testsuite> per report, one <testcase> per invariant (a failed
invariant is a <failure>; one excused by a predicted finding passes and says so) and one per finding
(a finding is an observation, not a failure: it passes and carries `predicted` as a property)."""
from __future__ import annotations

import xml.etree.ElementTree as ET


def suite(report: dict) -> ET.Element:
    sc = report["scenario"]
    # one of `compare --repeat N`'s runs: its index in the suite and class names, so every case is distinct
    rep = f" repeat {report['repeat']}" if report.get("repeat") else ""
    cls = sc["name"] + (f".repeat{report['repeat']}" if report.get("repeat") else "")
    name = f"{sc['name']}{rep} ({sc['strategy']} on {sc['cpu']} x{sc['vcpus']}, {sc['program']})"
    ts = ET.Element("testsuite", name=name, time=f"{report['seconds']:.3f}")
    failures = 0
    for inv, e in report["invariants"].items():
        tc = ET.SubElement(ts, "testcase", classname=f"{cls}.invariants", name=inv, time="0")
        if e["ok"] is False and not e.get("excused_by_finding"):
            failures += 1
            ET.SubElement(tc, "failure", message=e["detail"], type="invariant").text = e["detail"]
        elif e["ok"] is None:     # could not be judged for this guest: said, never passed
            ET.SubElement(tc, "skipped", message=e["detail"])
        else:
            out = e["detail"] + ("  (excused by a predicted finding)" if e.get("excused_by_finding") else "")
            ET.SubElement(tc, "system-out").text = out
    for f in report["findings"]:
        tc = ET.SubElement(ts, "testcase", classname=f"{cls}.findings", name=f["id"], time="0")
        props = ET.SubElement(tc, "properties")
        ET.SubElement(props, "property", name="predicted", value="yes" if f["predicted"] else "no")
        ET.SubElement(tc, "system-out").text = f["detail"]
    ts.set("tests", str(len(ts.findall("testcase"))))
    ts.set("failures", str(failures))
    ts.set("skipped", str(len(ts.findall("testcase/skipped"))))
    ts.set("errors", "0")
    return ts


def document(reports: list[dict]) -> ET.ElementTree:
    root = ET.Element("testsuites", name="kvmppc-cosim")
    for r in reports:
        root.append(suite(r))
    for key in ("tests", "failures"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in root)))
    return ET.ElementTree(root)


def write_junit(path: str, reports: list[dict]) -> None:
    tree = document(reports)
    ET.indent(tree)
    if path == "-":
        import sys
        sys.stdout.write(ET.tostring(tree.getroot(), encoding="unicode") + "\n")
    else:
        from . import outfile
        outfile.write(path, ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True))
