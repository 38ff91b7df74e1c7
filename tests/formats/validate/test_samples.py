"""The public negative sample (oat-sa/oneroster-import, GPL-2.0 data) must be rejected precisely."""

from __future__ import annotations

import pytest

from rostergate.formats.validate.entry import validate_dir
from tests.formats import conftest as kit

pytestmark = pytest.mark.skipif(not kit.OAT_SAMPLE.is_dir(), reason="../shared samples are not available")


def test_oat_sample_is_invalid_with_specific_codes():
    result = validate_dir(kit.OAT_SAMPLE)
    assert result.format == "oneroster-1.1" and not result.valid
    found = {(i.code, i.file) for i in result.issues}
    expected = {
        ("oneroster.file.no_rows", "academicSessions.csv"),  # header only
        ("oneroster.header.missing_column", "academicSessions.csv"),  # no schoolYear column
        ("oneroster.header.missing_column", "classes.csv"),  # grade instead of grades
        ("oneroster.header.unknown_column", "classes.csv"),  # ext_… column
        ("oneroster.header.metadata_position", "courses.csv"),  # metadata.duration in the middle
        ("oneroster.header.column_case", "demographics.csv"),  # birthdate
        ("oneroster.header.order", "enrollments.csv"),
        ("oneroster.header.metadata_position", "orgs.csv"),
        ("oneroster.value.boolean_case", "users.csv"),  # TRUE
        ("oneroster.status.forbidden_in_bulk", "orgs.csv"),  # dateLastModified in a bulk file
        ("oneroster.value.required", "classes.csv"),  # courseSourcedId empty
    }
    assert expected <= found, expected - found
    assert all(i.code != "internal.error" for i in result.issues)
