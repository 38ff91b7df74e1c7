"""One version guesser: detection, validation and conversion agree on a OneRoster upload's version.

Without a manifest (or with one that names no supported ``oneroster.version``) the files
decide (read/detect.py ``guess_version``): roles.csv or userProfiles.csv, or a users.csv
header of 1.2 (``primaryOrgSourcedId`` and no ``orgSourcedIds``), mean 1.2. Whatever the
files say, :func:`detect_format`, :func:`validate_dir` and :func:`convert_dir` must all
say the same, or an upload is checked against one standard and converted by another.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rostergate.formats.convert.entry import convert_dir
from rostergate.formats.read.detect import detect_format, guess_version, oneroster_version
from rostergate.formats.read.sources import find_file
from rostergate.formats.validate.entry import validate_dir
from tests.formats import conftest as kit

UNREFERENCED_DISTRICT = ["convert.dropped.unreferenced"]  # no row refers to the fixture's district org


def _without(base: Path, folder: Path, *names: str) -> Path:
    """A copy of ``base`` in ``folder`` without the files ``names``."""
    kit.copy(base, folder)
    for name in names:
        (folder / name).unlink()
    return folder


def _users_12_only(folder: Path) -> Path:
    """OneRoster 1.2 whose only sign of 1.2 is users.csv's header: no manifest, no roles.csv."""
    return _without(kit.OR12, folder, "manifest.csv", "roles.csv")


def test_manifest_less_upload_with_a_1_2_users_header_is_1_2_everywhere(tmp_path):
    folder = _users_12_only(tmp_path / "u")
    assert guess_version(lambda name: find_file(folder, name)) == "1.2"
    assert detect_format(folder) == "oneroster-1.2"
    assert oneroster_version(folder) == "1.2"
    result = validate_dir(folder)
    assert result.format == "oneroster-1.2"
    # checked against the 1.2 users.csv header: the missing manifest is the only finding
    assert [(i.code, i.file) for i in result.issues] == [("oneroster.manifest.missing", "manifest.csv")]
    assert validate_dir(folder, format="oneroster").issues == result.issues
    conversion = convert_dir(folder, "oneroster")
    assert conversion.source_format == "oneroster-1.2"
    # converted as 1.2: what is missing is 1.2's roles.csv, not 1.1's users.orgSourcedIds column
    assert [(i.code, i.file) for i in conversion.issues if i.severity == "error"] == [
        ("convert.missing_file", "roles.csv")]


def test_manifest_less_1_2_upload_converts_like_the_same_upload_with_its_manifest(tmp_path):
    folder = _without(kit.OR12, tmp_path / "u", "manifest.csv")
    assert detect_format(folder) == "oneroster-1.2"
    result = validate_dir(folder)
    assert (result.format, [i.code for i in result.issues]) == ("oneroster-1.2", ["oneroster.manifest.missing"])
    guessed, declared = convert_dir(folder, "oneroster"), convert_dir(kit.OR12, "oneroster-1.2")
    assert guessed.source_format == "oneroster-1.2" and guessed.ok
    assert [i.code for i in guessed.issues] == UNREFERENCED_DISTRICT
    assert sorted(guessed.tables) == sorted(declared.tables)
    for name, table in declared.tables.items():
        assert guessed.tables[name].equals(table), name


@pytest.mark.parametrize("users_name, bom", [("Users.csv", False), ("users.csv", True)])
def test_the_users_header_is_found_whatever_its_case_and_bom(tmp_path, users_name, bom):
    """File names are matched ignoring case, and Excel's BOM does not hide the header."""
    folder = _users_12_only(tmp_path / "u")
    users = folder / "users.csv"
    data = users.read_bytes()
    users.unlink()
    (folder / users_name).write_bytes(b"\xef\xbb\xbf" + data if bom else data)
    assert detect_format(folder) == "oneroster-1.2"
    assert validate_dir(folder).format == "oneroster-1.2"
    assert convert_dir(folder, "oneroster").source_format == "oneroster-1.2"


def test_manifest_less_1_1_upload_stays_1_1(tmp_path):
    folder = _without(kit.OR11, tmp_path / "u", "manifest.csv")
    assert detect_format(folder) == "oneroster-1.1"
    result = validate_dir(folder)
    assert (result.format, [i.code for i in result.issues]) == ("oneroster-1.1", ["oneroster.manifest.missing"])
    conversion = convert_dir(folder, "oneroster")
    assert conversion.source_format == "oneroster-1.1" and conversion.ok


def test_a_users_header_with_both_org_columns_is_not_1_2(tmp_path):
    """primaryOrgSourcedId alone is not enough: a 1.1 users.csv that still has orgSourcedIds is 1.1."""
    folder = _without(kit.OR11, tmp_path / "u", "manifest.csv")
    kit.insert_column(folder, "users.csv", 18, "primaryOrgSourcedId")
    assert detect_format(folder) == "oneroster-1.1"
    assert validate_dir(folder).format == "oneroster-1.1"
    assert convert_dir(folder, "oneroster").source_format == "oneroster-1.1"


@pytest.mark.parametrize("version", [None, "1.0"])
def test_a_manifest_without_a_supported_version_lets_the_files_decide_for_the_validator_too(tmp_path, version):
    """oneroster.version missing or unsupported: reported, and the files still decide the rules."""
    folder = _users_12_only(tmp_path / "u")
    shutil.copy(kit.OR12 / "manifest.csv", folder / "manifest.csv")
    kit.manifest_set(folder, "file.roles", "absent")
    kit.manifest_set(folder, "oneroster.version", version)
    assert detect_format(folder) == "oneroster-1.2"
    result = validate_dir(folder)
    assert result.format == "oneroster-1.2"
    expected = "oneroster.manifest.missing_property" if version is None else "oneroster.manifest.unsupported_version"
    # only the version itself is wrong: no 1.1 rule (manifest keys, users.csv header) is applied
    assert [i.code for i in result.issues] == [expected], [i.to_text() for i in result.issues]
    assert convert_dir(folder, "oneroster").source_format == "oneroster-1.2"
