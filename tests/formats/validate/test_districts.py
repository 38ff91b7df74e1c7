"""Generated districts (bench/gen_district.py at a small size) validate clean, and break as expected.

These run the column rules on multi-chunk Arrow data shaped like a real district,
which the hand-written fixtures are too small to exercise.
"""

from __future__ import annotations

import importlib.util

import pytest

from rostergate.formats.validate.entry import validate_dir
from tests.formats import conftest as kit

_spec = importlib.util.spec_from_file_location("gen_district", kit.ROOT / "bench" / "gen_district.py")
gen_district = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_district)


@pytest.fixture(scope="module", params=["1.1", "1.2", "asm"])
def district(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"district-{request.param}")
    gen_district.generate(folder, 3000, request.param, seed=7)
    return request.param, folder


def test_generated_district_is_valid(district):
    version, folder = district
    for profile in ("strict", "asm"):
        result = validate_dir(folder, profile=profile)
        assert result.issues == [], [i.to_text() for i in result.issues[:5]]
        assert result.format == ("asm" if version == "asm" else f"oneroster-{version}")


def test_generation_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    gen_district.generate(a, 500, "1.1", seed=3)
    gen_district.generate(b, 500, "1.1", seed=3)
    assert {p.name: p.read_bytes() for p in a.iterdir()} == {p.name: p.read_bytes() for p in b.iterdir()}


def test_many_bad_references_are_capped(tmp_path):
    folder = tmp_path / "d"
    gen_district.generate(folder, 2000, "1.1", seed=1)
    path = folder / "enrollments.csv"
    path.write_text(path.read_text().replace(",stu-0000", ",gone-0000"))
    result = validate_dir(folder)
    missing = [i for i in result.issues if i.code == "oneroster.reference.missing_record"]
    assert len(missing) == 21 and "more" in missing[-1].message
    assert missing[0].file == "enrollments.csv" and missing[0].column == "userSourcedId"
    assert missing[0].value.startswith("gone-") and missing[0].line >= 2
