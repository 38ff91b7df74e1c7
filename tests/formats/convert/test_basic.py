"""The lead's fixture (tests/fixtures/oneroster-1.1-valid) converts to hand-computed ASM files."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

from rostergate.formats.convert.entry import conversion_summary, convert_dir, render_preview, write_asm_zip

FIXTURE = Path(__file__).parents[2] / "fixtures" / "oneroster-1.1-valid"
AS_OF = dt.date(2026, 11, 22)

EXPECTED = {
    "students.csv": (
        "person_id,person_number,first_name,middle_name,last_name,grade_level,email_address,"
        "sis_username,password_policy,location_id\n"
        "usr-s1,S200,Sam,,Adams,09,sadams@example.org,sadams,,org-hs\n"
        "usr-s2,S201,Kim,Lee,Baker,09,kbaker@example.org,kbaker,,org-hs\n"
        "usr-s3,S202,Lou,,Cole,07,,lcole,,org-ms\n"
    ),
    "staff.csv": (
        "person_id,person_number,first_name,middle_name,last_name,email_address,sis_username,"
        "location_id,location_id_2\n"
        "usr-t1,T100,Terry,,Brown,tbrown@example.org,tbrown,org-hs,\n"
        "usr-t2,T101,Alex,J,Green,agreen@example.org,agreen,org-hs,org-ms\n"
    ),
    "courses.csv": (
        "course_id,course_number,course_name,location_id\n"
        "crs-bio,BIO101,Biology,org-hs\n"
        'crs-math,MATH7,"Math 7",org-ms\n'
    ),
    "classes.csv": (
        "class_id,class_number,course_id,instructor_id,instructor_id_2,instructor_id_3,location_id\n"
        "cls-bio-1,BIO101-1,crs-bio,usr-t1,usr-t2,,org-hs\n"
        "cls-math-1,MATH7-2,crs-math,usr-t2,,,org-ms\n"
    ),
    "rosters.csv": (
        "roster_id,class_id,student_id\n"
        "enr-3,cls-bio-1,usr-s1\n"
        "enr-4,cls-bio-1,usr-s2\n"
        "enr-6,cls-math-1,usr-s3\n"
    ),
    "locations.csv": (
        "location_id,location_name\n"
        'org-hs,"Fixture High School"\n'
        'org-ms,"Fixture Middle School"\n'
    ),
}


def test_fixture_converts_to_expected_zip(tmp_path: Path) -> None:
    conversion = convert_dir(FIXTURE, "oneroster-1.1", as_of=AS_OF)
    assert conversion.ok, conversion.issues
    out = tmp_path / "asm.zip"
    write_asm_zip(conversion, out)
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as archive:
        assert archive.namelist() == sorted(EXPECTED)
        for name, text in EXPECTED.items():
            assert archive.read(name).decode("utf-8") == text, name
    # the district org is the only row left out, and it is accounted for
    assert [(d.file, d.reason, d.count) for d in conversion.drops] == [("orgs.csv", "unreferenced", 1)]
    assert all(c.balanced for c in conversion.counts.values())


def test_summary_and_preview_render() -> None:
    conversion = convert_dir(FIXTURE, "oneroster-1.1", as_of=AS_OF)
    summary = conversion_summary(conversion)
    assert "unreferenced" in summary and "students.csv" in summary
    preview = render_preview(FIXTURE, "oneroster-1.1", None, 1, as_of=AS_OF)
    assert "== students.csv: 3 row(s), showing 1" in preview
    assert "users.csv:4" in preview


def test_lead_fixtures_for_12_and_asm_convert_cleanly() -> None:
    fixtures = FIXTURE.parent
    for name, source_format in (("oneroster-1.2-valid", "oneroster-1.2"), ("asm-valid", "asm")):
        if not (fixtures / name).is_dir():
            continue
        conversion = convert_dir(fixtures / name, source_format, as_of=AS_OF)
        assert conversion.ok, conversion.issues
        assert all(c.balanced for c in conversion.counts.values())
        assert all(len(t) for t in conversion.tables.values())
