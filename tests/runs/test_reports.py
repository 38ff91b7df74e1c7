"""The report in the uploader's home: every problem as ``file:line - what is wrong``, as text and JSON, owner-only."""

from __future__ import annotations

import json
from pathlib import Path

from rostergate import store
from rostergate.formats.catalogue import issue
from rostergate.formats.issues import Issue
from rostergate.history import History
from rostergate.runs.reports import render_report, write_report
from rostergate.runstatus import RunStatus
from tests.reportshape import REPORT, assert_report_shape


def test_report_names_every_problem_and_is_owner_only(tmp_path):
    history = History(store.connect(tmp_path / "var"))
    run = history.record_received("r1", "a", "r.zip", str(tmp_path / "spool" / "r1" / "upload.zip"), 10, "0" * 64)
    history.set_status(run.id, "processing")
    history.set_status(run.id, "rejected", "the upload breaks the rules listed in the report")
    issues = [
        Issue("error", "oneroster.manifest.file_missing", "file.users is bulk but users.csv is missing",
              "manifest.csv", 14, "value", "bulk"),
        Issue("warning", "text.encoding_converted", "converted from Windows-1252", "orgs.csv"),
    ]
    path = write_report(tmp_path / "home", history.get(run.id), [], issues)
    text = path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    assert "REJECTED" in text
    assert "manifest.csv:14 - value = 'bulk' file.users is bulk but users.csv is missing" in text
    assert "Warnings (1):" in text
    assert render_report(history.get(run.id), [], []).count("Errors") == 0


# -- the JSON report -----------------------------------------------------------------------
def _report_json(bench, run_id: str) -> dict:
    path = bench.accounts.home("district-a") / "reports" / f"{run_id}.json"
    assert path.stat().st_mode & 0o777 == 0o600
    return json.loads(path.read_text())


def test_a_json_report_beside_every_text_report_says_the_same_in_the_documented_shape(bench):
    run_id = bench.receive()
    assert bench.step().status is RunStatus.DELIVERED
    data = _report_json(bench, run_id)
    assert_report_shape(data)
    text = bench.report(run_id)
    assert data["run_id"] == run_id and data["status"] == "delivered" and data["headline"] in text
    assert data["upload_name"] in text and data["received_at"] in text
    [delivery] = data["deliveries"]
    receipt = bench.history.deliveries(run_id)[0]
    assert delivery == {"status": "delivered", "attempts": 1, "name": f"district-a-{run_id}.zip",
                        "size": receipt["size"], "sha256": receipt["sha256"], "finished_at": receipt["finished_at"]}
    assert f"sha256 {receipt['sha256']}" in text
    assert [s["name"] for s in data["steps"]] == [s["name"] for s in bench.history.steps(run_id)]
    # the conversion's counts per source file: read = delivered + dropped by reason (as the text says)
    users = data["counts"]["users.csv"]
    assert users["rows"] == users["delivered"] + sum(users["dropped"].values()) and users["rows"] > 0
    assert f"{'users.csv':<20} {users['rows']:>9} = {users['delivered']:>9}" in text
    assert [i["code"] for i in data["issues"]] == [i.code for i in bench.history.issues(run_id)]
    reports = bench.accounts.home("district-a") / "reports"
    assert sorted(p.name for p in reports.iterdir()) == [f"{run_id}.json", f"{run_id}.txt"]  # no partial left


def test_every_issue_carries_its_code_place_message_and_hint(tmp_path):
    history = History(store.connect(tmp_path / "var"))
    run = history.record_received("20261122-080000-abcdef", "a", "r.zip", "/spool/x/upload.zip", 10, "0" * 64)
    history.set_status(run.id, "processing")
    found = [issue("asm.header.missing_column", file="students.csv", line=1, column="person_id",
                   expected="person_id, first_name"),
             Issue("warning", "text.encoding_converted", "converted from Windows-1252", "orgs.csv")]
    history.replace_issues(run.id, found)  # stored and read back: the hint survives the store
    history.set_status(run.id, "rejected", "the upload breaks the rules listed in the report")
    write_report(tmp_path / "home", history.get(run.id), [], history.issues(run.id))
    data = json.loads((tmp_path / "home" / "reports" / f"{run.id}.json").read_text())
    assert_report_shape(data)
    first, second = data["issues"]
    assert first == {"severity": "error", "code": "asm.header.missing_column", "file": "students.csv", "line": 1,
                     "column": "person_id", "value": None, "message": found[0].message, "hint": found[0].hint}
    assert first["hint"] and first["message"].endswith(first["hint"]) and "person_id, first_name" in first["hint"]
    assert second["hint"] is None and second["file"] == "orgs.csv"
    assert data["counts"] == {} and data["deliveries"] == [] and data["status"] == "rejected"


def test_a_run_delivered_after_an_approval_still_reports_its_counts(bench):
    bench.configure(safeguards={"max_removed_percent": 10, "min_previous_rows": 0})
    bench.receive()
    bench.step()
    held = bench.receive(keep_students=1)
    assert bench.step().status is RunStatus.HELD
    held_counts = _report_json(bench, held)["counts"]
    assert held_counts and _report_json(bench, held)["status"] == "held"
    bench.lifecycle.approve(held)
    assert bench.step().status is RunStatus.DELIVERED  # no second conversion: the counts come from the store
    data = _report_json(bench, held)
    assert data["status"] == "delivered" and data["counts"] == held_counts
    assert_report_shape(data)


def test_the_readme_documents_the_shape_with_an_example_that_passes_the_check():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Reports as JSON"):]
    example = json.loads(section[section.index("```json\n") + 8: section.index("```", section.index("```json\n") + 8)])
    assert_report_shape(example)
    for key in REPORT:
        assert f"`{key}`" in section, key
