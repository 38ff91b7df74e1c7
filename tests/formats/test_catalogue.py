"""The catalogue itself: stable dotted codes, every template renders, every issue carries a hint,
family rows stand for their codes."""

from __future__ import annotations

import re

import pytest

from rostergate.formats.catalogue import CATALOGUE, MAX_VALUE, issue, lookup


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_code_renders_without_parameters(code):
    row = CATALOGUE[code]
    assert re.fullmatch(r"[a-z]+(\.[a-z0-9_]+)+", code)
    assert row.severity in ("error", "warning") and row.hint
    rendered = issue(code, file="x.csv", line=2, column="c", value="v")
    assert rendered.code == code and rendered.severity == row.severity
    reason, hint = rendered.message.split("; ", 1)
    assert reason and hint
    assert set(rendered.to_dict()) == {"severity", "code", "file", "line", "column", "value", "message"}


def test_values_are_clipped():
    long = issue("asm.value.required", file="x.csv", column="c", value="é" * 10_000)
    assert len(long.value) == MAX_VALUE and long.value.endswith("…")


def test_severity_override():
    assert issue("oneroster.value.invalid_guid", severity="warning").severity == "warning"


def test_family_codes_render_from_their_row():
    role = CATALOGUE["convert.dropped.role"]
    assert role.family and lookup("convert.dropped.role_parent") is role
    rendered = issue("convert.dropped.role_parent", file="users.csv", line=4, column="sourcedId", value="p1",
                     role="parent", count=2)
    assert rendered.code == "convert.dropped.role_parent" and rendered.severity == role.severity
    assert rendered.message.startswith("left out (2 row(s) in all): has role parent,")
    assert lookup("convert.dropped.role_other") is CATALOGUE["convert.dropped.role_other"]  # its own row wins


@pytest.mark.parametrize("code", ["convert.dropped.role_", "convert.dropped.nonsense", "asm.value.required_x"])
def test_unknown_codes_are_refused(code):
    with pytest.raises(KeyError):
        issue(code)
