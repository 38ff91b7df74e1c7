"""Renderers, the cap, and the JSON contract."""

from __future__ import annotations

import json

from rostergate.formats.validate.collect import Collector
from rostergate.formats.validate.entry import validate_dir
from rostergate.formats.validate.report import render_json, render_text
from tests.formats import conftest as kit


def test_claris_style_line(tmp_path):
    d = kit.copy(kit.ASM, tmp_path / "u")
    kit.edit(d, "staff.csv", 0, "location_id", "10")
    text = render_text(validate_dir(d))
    assert text.splitlines()[0].startswith("invalid (asm): 1 error")
    assert ("staff.csv:2 - location_id = '10' does not reference any location_id in locations.csv; "
            "add the record to locations.csv or correct the value [error asm.reference.missing_record]") in text


def test_json_contract_keys(tmp_path):
    d = kit.copy(kit.OR11, tmp_path / "u")
    kit.edit(d, "enrollments.csv", 2, "userSourcedId", "usr-zz")
    result = validate_dir(d)
    data = json.loads(render_json(result))
    assert data["valid"] is False and data["format"] == "oneroster-1.1"
    (issue,) = data["issues"]
    assert set(issue) == {"severity", "code", "file", "line", "column", "value", "message"}
    assert issue == {**issue, "severity": "error", "code": "oneroster.reference.missing_record",
                     "file": "enrollments.csv", "line": 4, "column": "userSourcedId", "value": "usr-zz"}


def test_repeated_issues_are_capped_with_and_n_more():
    import numpy as np

    from rostergate.formats.read.csvio import load_bytes
    from rostergate.formats.validate.masks import flag

    t = load_bytes(b"a\n" + b"x\n" * 1000, "big.csv")
    c = Collector(cap=20)
    flag(c, "asm.value.required", t, "a", np.ones(1000, bool))
    issues = c.issues()
    assert len(issues) == 21
    assert [i.line for i in issues[:3]] == [2, 3, 4]
    assert issues[-1].line is None and "and 980 more" in issues[-1].message


def test_valid_fixture_renders_one_line():
    assert render_text(validate_dir(kit.OR11)) == "valid (oneroster-1.1): 0 errors, 0 warnings\n"
