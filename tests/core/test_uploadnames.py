"""Which names in a tenant's home count as finished uploads (uploadnames.py)."""

from __future__ import annotations

import pytest

from rostergate.uploadnames import is_upload_name


@pytest.mark.parametrize(("name", "expected"), [
    ("/roster.zip", True), ("/sub/Roster.ZIP", True), ("/roster.zip.filepart", False),
    ("/roster.zip.a1b2.partial", False), ("/.in.roster.zip", False), ("/reports/x.zip", False),
    ("/notes.txt", False),
])
def test_upload_names(name, expected):
    assert is_upload_name(name) is expected
