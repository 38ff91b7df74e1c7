"""The report in the uploader's home: every problem as ``file:line - what is wrong``, owner-only."""

from __future__ import annotations

from rostergate import store
from rostergate.formats.issues import Issue
from rostergate.history import History
from rostergate.runs.reports import render_report, write_report


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
