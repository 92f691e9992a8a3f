"""`cosim compare` and `cosim run` outputs for CI: JSON with schema_version and the tool version,
repeats with latency intervals, parallel runs, JUnit XML with a testcase per invariant and finding."""
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cosim
from cosim import cli

REPO = Path(__file__).resolve().parents[1]


def test_compare_repeat_jobs_json_and_junit(tmp_path, capsys):
    js, xml = tmp_path / "c.json", tmp_path / "c.xml"
    rc = cli.main(["compare", "--strategies", "illegal", "sc64", "--cpus", "e500mc", "--iterations", "20",
                   "--repeat", "2", "--jobs", "2", "--json", str(js), "--junit", str(xml)])
    assert rc == 0
    doc = json.loads(js.read_text())
    assert doc["schema_version"] == cosim.SCHEMA_VERSION and doc["tool"]["version"] == cosim.__version__
    assert doc["tool"]["document"] == "compare"
    rows = {r["strategy"]: r for r in doc["rows"]}
    assert len(doc["reports"]) == 4 and set(rows) == {"illegal", "sc64"}
    il = rows["illegal"]
    assert il["repeats"] == 2 and il["verdict"] == "ok"
    assert il["per_hit"]["exits_by_level"]["userspace"] == 1 and il["per_hit"]["hops"] == 3
    assert il["per_warn"]["exits_by_level"]["kernel"] == 1 and il["per_warn"]["messages"] == 2
    p50 = il["user_latency_us"]["p50"]
    assert p50["n"] == 2 and p50["lo"] <= p50["mid"] <= p50["hi"]
    assert rows["sc64"]["verdict"] == "finding" and rows["sc64"]["findings"] == ["sc64-lost-hits"]
    assert rows["sc64"]["per_hit"]["count"] == 0
    out = capsys.readouterr()
    assert "transfer to hardware" in out.out and "host round trips" in out.out
    root = ET.parse(xml).getroot()
    suites = root.findall("testsuite")
    assert len(suites) == 4 and root.get("failures") == "0"
    for suite, report in zip(suites, doc["reports"]):
        names = [tc.get("name") for tc in suite.findall("testcase")]
        assert names == list(report["invariants"]) + [f["id"] for f in report["findings"]]
    # every repeat's cases are named apart (issue 23: 95 distinct of 475 before)
    cases = [(tc.get("classname"), tc.get("name")) for s in suites for tc in s.findall("testcase")]
    assert len(set(cases)) == len(cases), cases
    assert len({s.get("name") for s in suites}) == 4
    assert sorted(r["repeat"] for r in doc["reports"]) == [1, 1, 2, 2]
    sc = next(s for s in suites if "sc64" in s.get("name"))
    tc = next(t for t in sc.findall("testcase") if t.get("name") == "sc64-lost-hits")
    assert tc.find("properties/property").get("value") == "yes"


def test_run_junit_failure_is_a_failure(tmp_path):
    xml = tmp_path / "r.xml"
    rc = cli.main(["run", str(REPO / "configs" / "demo.toml"), "--quiet", "--junit", str(xml),
                   "--set", "machine.vcpus=1", "--set", "guest.iterations=10", "--set", "expect.debugger_hits=3"])
    assert rc == 1
    suite = ET.parse(xml).getroot().find("testsuite")
    assert suite.get("failures") == "1"
    failed = [t for t in suite.findall("testcase") if t.find("failure") is not None]
    assert [t.get("name") for t in failed] == ["expect-debugger-hits"]
    assert "expected 3" in failed[0].find("failure").get("message")


def test_set_is_said_in_the_description(tmp_path):
    js = tmp_path / "r.json"
    assert cli.main(["run", "demo", "--quiet", "--json", str(js), "--set", "machine.vcpus=1",
                     "--set", "guest.iterations=10"]) == 0
    sc = json.loads(js.read_text())["scenario"]
    assert sc["description"].endswith("(with --set machine.vcpus=1, guest.iterations=10)"), sc["description"]
    assert sc["vcpus"] == 1
