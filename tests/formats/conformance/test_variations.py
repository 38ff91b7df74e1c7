"""Every legal spelling of a valid district stays valid and converts to the same people.

A district's names (with commas, quotes, backslashes and letters beyond ASCII, empty middle
names) are written once plainly, then again with the liberties the formats allow: a UTF-8
BOM, CRLF line ends, no final line end, every value quoted, extra ``metadata.*`` columns
(OneRoster, oneroster.md §2 G7) and empty optional columns. The variant must validate with
no error (a BOM is only a warning) and convert to exactly the same ASM people as the plain
copy, with every name intact (issue 11: strictness must not cost a legal upload).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rostergate.formats.convert.entry import convert_dir
from rostergate.formats.validate.entry import validate_dir

from .packages import Package, district, render, write

EXAMPLES = int(os.environ.get("RG_HYPOTHESIS_EXAMPLES", "12"))  # each example validates and converts twice
SOURCE = {"1.1": "oneroster-1.1", "1.2": "oneroster-1.2", "asm": "asm"}

letters = st.sampled_from(list("AbcÉéøŁł李Zß") + ["Ann", "O", "Mc"])
punctuation = st.sampled_from([" ", ",", '"', "'", "-", "\\", ", Jr.", ' "Bo" '])
name = st.lists(st.one_of(letters, punctuation), min_size=1, max_size=6).map("".join).filter(
    lambda n: any(ch.isalpha() for ch in n))
middle = st.one_of(st.just(""), name)
people = st.lists(st.tuples(name, middle, name), min_size=1, max_size=5)


@st.composite
def spellings(draw: st.DrawFn, package: Package) -> dict[str, bool | str]:
    return {
        "bom": draw(st.booleans()),
        "newline": draw(st.sampled_from(["\n", "\r\n"])),
        "final_newline": draw(st.booleans()),
        "quote_all": draw(st.booleans()),
        "metadata": package.oneroster and draw(st.booleans()),
        "empty_optional": draw(st.booleans()),
    }


def spelled(package: Package, how: dict) -> Package:
    """``package`` written with the liberties of ``how`` (raw bytes for every file)."""
    out = package.copy()
    for file, rows in package.tables.items():
        header = package.header(file)
        rows = [dict(r) for r in rows]
        if how["metadata"] and file != "manifest.csv":
            header = [*header, "metadata.note"]
            for n, row in enumerate(rows):
                row["metadata.note"] = f"note {n}, with a comma"
        if how["empty_optional"]:  # optional columns present but empty (the usual export)
            for row in rows:
                for column in ("identifier", "email", "email_address", "person_number", "sis_username"):
                    if column in row:
                        row[column] = ""
        data = render(header, rows, apple=not package.oneroster, quote_all=how["quote_all"],
                      newline=how["newline"], final_newline=how["final_newline"])
        out.raw[file] = (b"\xef\xbb\xbf" if how["bom"] else b"") + data
    return out


def _people(conversion) -> dict[str, pd.DataFrame]:
    keep = ["person_id", "first_name", "middle_name", "last_name", "location_id"]
    return {n: conversion.tables[n][keep].reset_index(drop=True) for n in ("students.csv", "staff.csv")}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["1.1", "1.2", "asm"]), people, st.data())
def test_legal_spellings_stay_valid_and_convert_to_the_same_people(tmp_path_factory, fmt, names, data):
    plain = district(fmt, names)
    how = data.draw(spellings(plain))
    if how["empty_optional"]:
        for row in plain.tables["users.csv" if plain.oneroster else "students.csv"]:
            for column in ("identifier", "email", "email_address", "person_number", "sis_username"):
                if column in row:
                    row[column] = ""
    root = tmp_path_factory.mktemp("district")
    plain_dir, variant_dir = write(plain, root / "plain"), write(spelled(plain, how), root / "variant")

    result = validate_dir(variant_dir, profile="asm")
    assert result.valid, (how, [i.to_text() for i in result.errors])
    assert {i.code for i in result.issues} <= {"text.utf8_bom"}, [i.to_text() for i in result.issues]

    expected, got = _people(convert_dir(plain_dir, SOURCE[fmt])), _people(convert_dir(variant_dir, SOURCE[fmt]))
    for file in expected:
        pd.testing.assert_frame_equal(got[file], expected[file], check_dtype=False)
    students = got["students.csv"].sort_values("person_id", key=lambda s: s.str[1:].astype(int))
    assert list(zip(students["first_name"], students["middle_name"], students["last_name"])) == names


def test_every_spelling_is_exercised(tmp_path: Path) -> None:
    """The liberties really reach the bytes (a variation that changes nothing tests nothing)."""
    plain = district("1.1", [("Zoë", "", 'O"Brien, Jr.')])
    how = {"bom": True, "newline": "\r\n", "final_newline": False, "quote_all": True, "metadata": True,
           "empty_optional": True}
    users = spelled(plain, how).raw["users.csv"]
    assert users.startswith(b'\xef\xbb\xbf"sourcedId"') and b"\r\n" in users and not users.endswith(b"\n")
    assert b'"metadata.note"' in users and b'"O""Brien, Jr."' in users
    apple = spelled(district("asm", [("Zoë", "", 'O"Brien\\x')]), how).raw["students.csv"]
    assert b'"O\\"Brien\\\\x"' in apple
