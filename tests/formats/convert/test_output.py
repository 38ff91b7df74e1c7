"""Output as Apple asks: determinism, ZIP layout, CSV dialect; ASM input; impossible input."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rostergate.formats.convert import asmwrite
from rostergate.formats.convert.asmwrite import csv_bytes, write_zip, zip_bytes
from rostergate.formats.convert.entry import conversion_summary, convert_dir, render_preview, write_asm_zip
from rostergate.formats.read.csvio import load_bytes
from rostergate.formats.schema.asm import ESCAPE
from tests.conftest import require_tool

from .conftest import zip_members

FIXTURES = Path(__file__).parents[2] / "fixtures" / "convert"
AS_OF = dt.date(2026, 11, 22)


def test_convert_twice_gives_identical_bytes(tmp_path: Path) -> None:
    for name, version in (("or11-district", "oneroster-1.1"), ("or12-district", "oneroster-1.2")):
        a, b = tmp_path / f"{name}-a.zip", tmp_path / f"{name}-b.zip"
        write_asm_zip(convert_dir(FIXTURES / name, version, as_of=AS_OF), a)
        write_asm_zip(convert_dir(FIXTURES / name, version, as_of=AS_OF), b)
        assert a.read_bytes() == b.read_bytes()


def test_row_order_of_the_input_does_not_matter(tmp_path: Path) -> None:
    shuffled = tmp_path / "shuffled"
    shutil.copytree(FIXTURES / "or11-district", shuffled)
    for name in ("users.csv", "enrollments.csv", "orgs.csv"):
        lines = (shuffled / name).read_text().splitlines()
        # reverse the data rows but keep first-of-duplicates semantics by only moving unique rows
        (shuffled / name).write_text("\n".join([lines[0], *sorted(lines[1:], key=lambda line: line[::-1])]) + "\n")
    a = convert_dir(FIXTURES / "or11-district", "oneroster-1.1", as_of=AS_OF).tables
    b = convert_dir(shuffled, "oneroster-1.1", as_of=AS_OF).tables
    # duplicates resolve by file order, so compare only tables without duplicate_id effects
    for name in ("rosters.csv", "classes.csv", "courses.csv"):
        pd.testing.assert_frame_equal(a[name], b[name])


def test_zip_layout_is_fixed(tmp_path: Path) -> None:
    out = tmp_path / "out.zip"
    write_asm_zip(convert_dir(FIXTURES / "or11-district", "oneroster-1.1", as_of=AS_OF), out)
    with zipfile.ZipFile(out) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == sorted(["students.csv", "staff.csv", "courses.csv", "classes.csv",
                                                       "rosters.csv", "locations.csv"])
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.external_attr >> 16 == 0o100644
            data = archive.read(info)
            assert not data.startswith(b"\xef\xbb\xbf") and b"\r" not in data and data.endswith(b"\n")
            data.decode("utf-8")


def _sample_files() -> dict[str, bytes]:
    return {"students.csv": b"person_id,first_name\n" + b"".join(b"s%d,Name %d\n" % (i, i) for i in range(5000)),
            "locations.csv": b"location_id,location_name\nL1,\"Main School\"\n", "rosters.csv": b""}


def test_zip_is_read_back_by_zipfile_and_info_zip(tmp_path: Path) -> None:
    """The hand-written container (isal deflate) checks out in two independent readers."""
    files = _sample_files()
    out = tmp_path / "out.zip"
    out.write_bytes(zip_bytes(files))
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        assert {i.filename: archive.read(i) for i in archive.infolist()} == files
        assert [i.create_system for i in archive.infolist()] == [3, 3, 3]
    unzip = require_tool("unzip")
    tested = subprocess.run([unzip, "-t", str(out)], capture_output=True, text=True, timeout=30)
    assert tested.returncode == 0 and "No errors detected" in tested.stdout, tested.stdout + tested.stderr


def test_zip_past_the_zip32_limits_goes_through_zipfile(monkeypatch: pytest.MonkeyPatch) -> None:
    files = _sample_files()
    monkeypatch.setattr(asmwrite, "_ZIP32_LIMIT", 0)
    with zipfile.ZipFile(io.BytesIO(zip_bytes(files))) as archive:
        assert {i.filename: archive.read(i) for i in archive.infolist()} == files
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in archive.infolist())


@pytest.mark.parametrize("zip32", [True, False])
def test_zip_streamed_to_a_file_is_the_same_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    zip32: bool) -> None:
    """write_zip (entry by entry into an open file, what a run does) writes the bytes zip_bytes returns,
    on both the hand-written path and the zipfile (ZIP64) one."""
    if not zip32:
        monkeypatch.setattr(asmwrite, "_ZIP32_LIMIT", 0)
    files = _sample_files()
    out = tmp_path / "out.zip"
    with open(out, "wb") as handle:
        write_zip(files, handle)
    assert out.read_bytes() == zip_bytes(files)
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        assert {i.filename: archive.read(i) for i in archive.infolist()} == files


def test_zip_refuses_folders(tmp_path: Path) -> None:
    with open(tmp_path / "out.zip", "wb") as handle, pytest.raises(ValueError):
        write_zip({"dir/students.csv": b""}, handle)
    with pytest.raises(ValueError):
        zip_bytes({"dir/students.csv": b""})


@pytest.mark.parametrize("value,written", [
    ("plain", "plain"),
    ("two words", '"two words"'),
    ("a,b", '"a,b"'),
    ("tab\there", '"tab\there"'),
    ('O"Neil', 'O\\"Neil'),                 # asm.md §1.1: quote escaped with a backslash
    ('say "hi"', '"say \\"hi\\""'),
    ("line\nbreak", "line\\\nbreak"),        # line break escaped with a backslash
    ("cr\r\nlf", "cr\\\nlf"),                # CRLF normalised to LF first
    ("back\\slash", "back\\\\slash"),        # the escape character escapes itself
    ("", ""),
    ("héllo", "héllo"),
])
def test_apple_quoting(value: str, written: str) -> None:
    frame = pd.DataFrame({"a": [value], "b": ["x"]}, dtype="str")
    data = csv_bytes(frame)
    assert data == f"a,b\n{written},x\n".encode()
    expected = value.replace("\r\n", "\n")
    assert load_bytes(data, "x.csv", escape_char=ESCAPE).frame.iloc[0]["a"] == expected  # csvio reads Apple's dialect


def test_header_only_and_single_column() -> None:
    assert csv_bytes(pd.DataFrame({"a": pd.Series(dtype="str"), "b": pd.Series(dtype="str")})) == b"a,b\n"
    assert csv_bytes(pd.DataFrame({"a": ["1", "2 3"]}, dtype="str")) == b'a\n1\n"2 3"\n'


def test_asm_input_is_normalised(tmp_path: Path) -> None:
    src = tmp_path / "asm" / "Export"  # one folder inside the upload: found
    src.mkdir(parents=True)
    (src / "students.csv").write_text(
        "person_id;first_name;last_name;location_id;person_number;middle_name;grade_level;email_address;"
        "sis_username;password_policy;location_id_2;nickname\n"
        "s1;Ana;Lee;l1;;;;;;;l2;Nana\n", encoding="utf-8")
    (src / "STAFF.csv").write_text(
        "\ufeffperson_id,person_number,first_name,middle_name,last_name,email_address,sis_username,location_id\n"
        "t1,,Tom,,Ray,,,l1\n", encoding="utf-8")
    (src / "courses.csv").write_text("course_id,course_number,course_name,location_id\nc1,,Art 1,l1\n")
    (src / "classes.csv").write_text(
        "class_id,class_number,course_id,instructor_id,location_id,instructor_id_4\nk1,,c1,t1,l1,\n")
    (src / "rosters.csv").write_text("roster_id,class_id,student_id\nr1,k1,s1\n")
    (src / "locations.csv").write_text("location_id,location_name\nl1,One\nl2,Two\n")
    conversion = convert_dir(tmp_path / "asm", "asm")
    assert conversion.ok, conversion.issues
    students = conversion.tables["students.csv"]
    assert list(students.columns) == ["person_id", "person_number", "first_name", "middle_name", "last_name",
                                      "grade_level", "email_address", "sis_username", "password_policy",
                                      "location_id", "location_id_2"]
    assert students.iloc[0]["location_id_2"] == "l2"
    assert list(conversion.tables["classes.csv"].columns) == [
        "class_id", "class_number", "course_id", "instructor_id", "instructor_id_2", "instructor_id_3",
        "location_id", "instructor_id_4"]
    codes = {(i.code, i.file, i.column) for i in conversion.issues}
    assert ("convert.asm.unknown_column", "students.csv", "nickname") in codes
    assert ("convert.asm.missing_column", "classes.csv", "instructor_id_2") in codes
    assert all(c.balanced for c in conversion.counts.values())
    out = tmp_path / "out.zip"
    write_asm_zip(conversion, out)
    assert zip_members(out)["courses.csv"] == b'course_id,course_number,course_name,location_id\nc1,,"Art 1",l1\n'
    assert "as uploaded" in render_preview(tmp_path / "asm", "asm", None, 1)


def test_asm_input_missing_a_file(tmp_path: Path) -> None:
    (tmp_path / "students.csv").write_text("person_id\n")
    conversion = convert_dir(tmp_path, "asm")
    assert not conversion.ok
    assert conversion.issues[-1].code == "convert.missing_file"


@pytest.mark.parametrize("remove,code,file", [
    ("users.csv", "convert.missing_file", "users.csv"),
    ("orgs.csv", "convert.missing_file", "orgs.csv"),
])
def test_impossible_input_is_an_error_not_an_exception(tmp_path: Path, remove: str, code: str, file: str) -> None:
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "or11-district", src)
    (src / remove).unlink()
    conversion = convert_dir(src, "oneroster-1.1", as_of=AS_OF)
    assert not conversion.ok
    errors = [i for i in conversion.issues if i.severity == "error"]
    assert [(i.code, i.file) for i in errors] == [(code, file)]
    assert all(len(t) == 0 for t in conversion.tables.values())
    assert "ERROR" in conversion_summary(conversion)
    with pytest.raises(ValueError):
        write_asm_zip(conversion, tmp_path / "x.zip")


def test_missing_structural_column_and_roles_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "or11-district", src)
    text = (src / "users.csv").read_text().replace("orgSourcedIds", "orgs", 1)
    (src / "users.csv").write_text(text)
    conversion = convert_dir(src, "oneroster-1.1", as_of=AS_OF)
    assert [(i.code, i.column, i.line) for i in conversion.issues] == [("convert.missing_column", "orgSourcedIds", 1)]
    # 1.2 needs roles.csv
    conversion = convert_dir(FIXTURES / "or11-district", "oneroster-1.2", as_of=AS_OF)
    assert [(i.code, i.file) for i in conversion.issues if i.severity == "error"] == [
        ("convert.missing_file", "roles.csv")]


def test_optional_files_missing_give_empty_tables(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "or11-district", src)
    for name in ("courses.csv", "classes.csv", "enrollments.csv"):
        (src / name).unlink()
    conversion = convert_dir(src, "oneroster-1.1", as_of=AS_OF)
    assert conversion.ok
    assert len(conversion.tables["classes.csv"]) == 0 and len(conversion.tables["students.csv"]) == 4
    assert sum(i.code == "convert.missing_file" for i in conversion.issues) == 3


def test_unknown_source_format() -> None:
    with pytest.raises(ValueError):
        convert_dir(FIXTURES / "or11-district", "csv")


def test_summary_lists_every_reason() -> None:
    conversion = convert_dir(FIXTURES / "or11-district", "oneroster-1.1", as_of=AS_OF)
    text = conversion_summary(conversion)
    for drop in conversion.drops:
        assert f"{drop.reason}: {drop.message}" in text
    assert "users.csv                   29 =        23 +         6" in text


def test_plain_oneroster_picks_the_version() -> None:
    a = convert_dir(FIXTURES / "or12-district", "oneroster", as_of=AS_OF)
    assert a.source_format == "oneroster-1.2" and a.ok
    b = convert_dir(FIXTURES / "or11-district", "oneroster", as_of=AS_OF)
    assert b.source_format == "oneroster-1.1" and b.ok


_CELLS = st.text(alphabet=st.sampled_from(list("abZ09-_.é€ \t,\"\\\r\n\x00")), max_size=6)


@given(st.lists(st.tuples(_CELLS, _CELLS), min_size=1, max_size=12))
@settings(max_examples=300, deadline=None)
def test_a_verbatim_frame_is_exactly_what_its_bytes_parse_to(rows: list[tuple[str, str]]) -> None:
    """The output check may read a frame instead of its CSV only when the two cannot differ."""
    frame = pd.DataFrame({"person_id": [a for a, _ in rows], "last_name": [b for _, b in rows]}, dtype="str")
    specials = set(" \t,\"\\\r\n\x00")
    has_special = any(ch in specials for row in rows for cell in row for ch in cell)
    assert asmwrite.serialise(frame).verbatim is not has_special
    if not has_special:
        expected = "person_id,last_name\n" + "".join(f"{a},{b}\n" for a, b in rows)
        assert csv_bytes(frame) == expected.encode("utf-8")  # Arrow's writer, rows joined as they are
        loaded = load_bytes(csv_bytes(frame), "students.csv", escape_char=ESCAPE)
        assert loaded.issues == [] and loaded.lines is None
        pd.testing.assert_frame_equal(loaded.frame, frame)


def test_header_names_count_for_verbatim() -> None:
    assert not asmwrite.serialise(pd.DataFrame({"first name": ["a"]}, dtype="str")).verbatim
    assert asmwrite.serialise(pd.DataFrame({"first_name": ["a"]}, dtype="str")).verbatim


def test_a_frame_with_missing_values_is_never_verbatim() -> None:
    """A null the writer would turn into "" must be checked from the bytes, not the frame."""
    frame = pd.DataFrame({"roster_id": ["r1", None], "class_id": ["c1", "c2"]}, dtype="str")
    assert not asmwrite.serialise(frame).verbatim
    assert not asmwrite.serialise(pd.DataFrame({"roster_id": [1, 2]})).verbatim


def test_a_zip_stream_takes_a_file_in_pieces_and_refuses_names_out_of_order() -> None:
    """A run hands each CSV over as header + rows (views of Arrow memory, never joined)."""
    files = _sample_files()
    out = io.BytesIO()
    stream = asmwrite.ZipStream(out)
    for name in sorted(files):
        data = files[name]
        stream.add(name, (data[:7], memoryview(data)[7:]))
    with pytest.raises(ValueError, match="name order"):
        stream.add("classes.csv", (b"",))
    stream.close()
    assert out.getvalue() == zip_bytes(files)


def test_serialised_parts_are_the_csv_and_the_verbatim_flag_matches_the_values() -> None:
    plain = pd.DataFrame({"person_id": ["s1", "s2"], "first_name": ["Ann", "Bo"]}, dtype="str")
    spaced = pd.DataFrame({"person_id": ["s1"], "first_name": ["Mary Ann"]}, dtype="str")
    for frame, verbatim in ((plain, True), (spaced, False)):
        serialised = asmwrite.serialise(frame)
        assert serialised.verbatim is verbatim
        assert serialised.joined() == csv_bytes(frame)
    assert asmwrite.serialise(spaced).joined() == b'person_id,first_name\ns1,"Mary Ann"\n'


def test_the_size_bound_is_never_below_the_csv() -> None:
    """The run picks ZIP32 or ZIP64 from this bound before any byte is written."""
    frames = [pd.DataFrame({"a": ['x"\\\r\n, \t', ""], "b": ["é", "\\\\"]}, dtype="str"),
              pd.DataFrame({"roster_id": [1, 22222222222]}), pd.DataFrame({"a": pd.Series(dtype="str")})]
    for frame in frames:
        assert asmwrite.csv_size_bound(frame) >= len(csv_bytes(frame))
