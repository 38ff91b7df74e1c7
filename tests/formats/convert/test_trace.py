"""Every source row is accounted for, and a problem in the output is shown where it came from.

The ledger's invariant (rows read = rows used + rows dropped, by reason) holds for rows the
reader could not read at all (``malformed``); an output check's findings are placed at the
uploaded file, line and column through the conversion's lineage (issue 11).
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

from rostergate.formats.convert import columnrules
from rostergate.formats.convert.entry import check_output, conversion_summary, convert_dir, trace_to_input
from rostergate.formats.convert.mapping import Mapping
from rostergate.formats.schema import asm
from rostergate.formats.schema import oneroster as S

from .conftest import write_oneroster
from .test_convert_codes import BASE_11, BASE_12

AS_OF = dt.date(2026, 11, 22)


def test_a_malformed_row_is_read_and_dropped_not_lost(tmp_path: Path) -> None:
    folder = write_oneroster(tmp_path / "u", copy.deepcopy(BASE_11), "1.1")
    with open(folder / "users.csv", "a") as fh:
        fh.write("s9,,,true,o1,student,zed\n")  # line 4: too few values
    conversion = convert_dir(folder, "oneroster-1.1", as_of=AS_OF)
    users = conversion.counts["users.csv"]
    assert (users.input, users.output, users.dropped) == (3, 2, {"malformed": 1}) and users.balanced
    rows = conversion.dropped_rows
    assert rows.loc[rows["reason"] == "malformed", ["file", "line"]].values.tolist() == [["users.csv", 4]]
    summary = conversion_summary(conversion)
    assert "users.csv" in summary and "3 =         2 +         1" in summary
    assert "malformed: could not be read as a row" in summary and "(line 4)" in summary
    assert "convert.dropped.malformed" in {i.code for i in conversion.issues}


def test_a_malformed_asm_row_is_counted_too(tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(Path(__file__).parents[2] / "fixtures" / "asm-valid", tmp_path / "u"))
    with open(folder / "rosters.csv", "a") as fh:
        fh.write("enr-x,cls-bio-1\n")
    conversion = convert_dir(folder, "asm")
    rosters = conversion.counts["rosters.csv"]
    assert rosters.dropped == {"malformed": 1} and rosters.input == rosters.output + 1


def test_an_output_problem_is_placed_at_the_uploaded_row_and_column(tmp_path: Path) -> None:
    """1.2-legal ids that Apple refuses: the check of the output names students.csv person_id and
    rosters.csv roster_id, files the district never saw; traced, they are users.csv and
    enrollments.csv sourcedId, at the lines the values were uploaded on."""
    tables = copy.deepcopy(BASE_12)
    for file, column in (("users.csv", "sourcedId"), ("roles.csv", "userSourcedId"),
                         ("enrollments.csv", "userSourcedId")):
        for row in tables[file]:
            row[column] = row[column].replace("s1", "s1@north")
    tables["enrollments.csv"][0]["sourcedId"] = "e1/2026"
    folder = write_oneroster(tmp_path / "u", tables, "1.2")
    conversion = convert_dir(folder, "oneroster-1.2", as_of=AS_OF)
    checked = check_output(conversion)
    assert {(i.code, i.file, i.column) for i in checked.errors} == {
        ("asm.value.invalid_id", "students.csv", "person_id"), ("asm.value.invalid_id", "rosters.csv", "roster_id")}
    traced = trace_to_input(checked, conversion)
    assert {(i.code, i.file, i.line, i.column, i.value) for i in traced} == {
        ("output.asm.value.invalid_id", "users.csv", 2, "sourcedId", "s1@north"),
        ("output.asm.value.invalid_id", "enrollments.csv", 2, "sourcedId", "e1/2026"),
    }
    by_file = {i.file: i for i in traced}
    assert by_file["users.csv"].severity == "error" and "students.csv person_id" in by_file["users.csv"].message
    assert "rosters.csv roster_id" in by_file["enrollments.csv"].message


def test_a_mapped_column_is_traced_to_the_column_the_mapping_reads() -> None:
    preferred = columnrules.ColumnRule(sources=("preferredGivenName",))
    mapping = Mapping(columns=(("students", (("first_name", preferred),)),))
    assert columnrules.source_column("students.csv", "first_name", "oneroster-1.2", mapping) == "preferredGivenName"
    assert columnrules.source_column("students.csv", "first_name", "oneroster-1.2", Mapping()) == "givenName"
    assert columnrules.source_column("students.csv", "grade_level", "oneroster-1.1", Mapping()) == "grades"
    assert columnrules.source_column("classes.csv", "instructor_id_2", "oneroster-1.1", Mapping()) is None
    assert columnrules.source_column("staff.csv", "location_id_3", "oneroster-1.1", Mapping()) == "orgSourcedIds"
    assert columnrules.source_column("staff.csv", "location_id", "oneroster-1.2", Mapping()) is None  # roles.csv
    assert columnrules.source_column("students.csv", "last_name", "asm", Mapping()) == "last_name"


def test_the_asm_profiles_tables_agree_with_the_converters_defaults() -> None:
    """The validator checks Apple's rules on the columns the default mapping really copies."""
    for (stem, column), asm_column in S.ASM_NAME_SOURCES.items():
        asm_file = {"users": "students", "courses": "courses", "orgs": "locations"}[stem]
        assert asm_column in asm.NAME_COLUMNS[asm_file]
        assert columnrules.source_column(f"{asm_file}.csv", asm_column, "oneroster-1.1", Mapping()) == column
    # class_display_name is opt-in
    copied = {(f, c) for f, cols in asm.NAME_COLUMNS.items() for c in cols if f != "classes"}
    assert copied <= {({"users": "students", "courses": "courses", "orgs": "locations"}[s], a)
                      for (s, _), a in S.ASM_NAME_SOURCES.items()} | {("staff", c) for c in asm.NAME_COLUMNS["staff"]}
    for stem, column in S.ASM_ID_SOURCES.items():
        asm_file = {"orgs": "locations", "users": "students", "courses": "courses", "classes": "classes",
                    "enrollments": "rosters"}[stem]
        assert columnrules.source_column(f"{asm_file}.csv", asm.KEYS[asm_file], "oneroster-1.1", Mapping()) == column
