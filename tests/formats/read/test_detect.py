"""One version guesser: detection, validation and conversion agree on a OneRoster upload's version.

Without a manifest (or with one that names no ``oneroster.version``) the upload decides
(read/detect.py ``guess_version``): a file only 1.2 has (roles.csv, userProfiles.csv …), a
1.2 ``file.*`` key in the manifest, or a users.csv header of 1.2 (``primaryOrgSourcedId`` and
no ``orgSourcedIds``) mean 1.2, and the report says it guessed, and why
(``oneroster.manifest.version_guessed``). Whatever the files say, :func:`detect_format`,
:func:`validate_dir` and :func:`convert_dir` must all say the same, or an upload is checked
against one standard and converted by another. A numbered version that is neither 1.1 nor
1.2 (1.0, 2.0) is reported and nothing else is judged.
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
GUESSED = "oneroster.manifest.version_guessed"


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
    guess = guess_version(lambda name: find_file(folder, name))
    assert guess.version == "1.2" and "users.csv" in guess.why
    assert detect_format(folder) == "oneroster-1.2"
    assert oneroster_version(folder) == "1.2"
    result = validate_dir(folder)
    assert result.format == "oneroster-1.2"
    # checked against the 1.2 users.csv header: the missing manifest is the only finding, and the guess is said
    assert [(i.code, i.file) for i in result.issues] == [("oneroster.manifest.missing", "manifest.csv"),
                                                         (GUESSED, "manifest.csv")]
    assert "primaryOrgSourcedId" in result.issues[1].message
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
    assert (result.format, [i.code for i in result.issues]) == ("oneroster-1.2", ["oneroster.manifest.missing",
                                                                                   GUESSED])
    assert "roles.csv" in result.issues[1].message
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
    assert (result.format, [i.code for i in result.issues]) == ("oneroster-1.1", ["oneroster.manifest.missing",
                                                                                   GUESSED])
    conversion = convert_dir(folder, "oneroster")
    assert conversion.source_format == "oneroster-1.1" and conversion.ok


def test_a_users_header_with_both_org_columns_is_not_1_2(tmp_path):
    """primaryOrgSourcedId alone is not enough: a 1.1 users.csv that still has orgSourcedIds is 1.1."""
    folder = _without(kit.OR11, tmp_path / "u", "manifest.csv")
    kit.insert_column(folder, "users.csv", 18, "primaryOrgSourcedId")
    assert detect_format(folder) == "oneroster-1.1"
    assert validate_dir(folder).format == "oneroster-1.1"
    assert convert_dir(folder, "oneroster").source_format == "oneroster-1.1"


@pytest.mark.parametrize("version", [None, "1.0", "v1.2"])
def test_a_manifest_without_a_supported_version_lets_the_files_decide_for_the_validator_too(tmp_path, version):
    """oneroster.version missing or unreadable: reported, and the files decide the rules; a numbered
    version that is not 1.1 or 1.2 (1.0) is reported alone: no version's rules are applied."""
    folder = _users_12_only(tmp_path / "u")
    shutil.copy(kit.OR12 / "manifest.csv", folder / "manifest.csv")
    kit.manifest_set(folder, "file.roles", "absent")
    kit.manifest_set(folder, "oneroster.version", version)
    assert detect_format(folder) == "oneroster-1.2"
    result = validate_dir(folder)
    assert result.format == "oneroster-1.2"
    expected = {None: ["oneroster.manifest.missing_property", GUESSED],
                "1.0": ["oneroster.manifest.unsupported_version"],
                "v1.2": ["oneroster.manifest.unsupported_version", GUESSED]}[version]
    # only the version itself is wrong: no 1.1 rule (manifest keys, users.csv header) is applied
    assert sorted(i.code for i in result.issues) == sorted(expected), [i.to_text() for i in result.issues]
    if GUESSED in expected:  # the manifest's own 1.2 key gave it away
        assert "file.roles" in next(i.message for i in result.issues if i.code == GUESSED)
    assert convert_dir(folder, "oneroster").source_format == "oneroster-1.2"


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_an_unknown_numbered_version_stops_the_check_after_the_manifest(tmp_path, version):
    """A 1.2 package marked 2.0 is not judged by 1.1 rules: the one finding is the version."""
    folder = kit.copy(kit.OR12, tmp_path / "u")
    kit.manifest_set(folder, "oneroster.version", version)
    result = validate_dir(folder)
    assert [(i.code, i.value) for i in result.issues] == [("oneroster.manifest.unsupported_version", version)]
    assert not result.valid


def test_a_1_2_package_without_its_version_is_guessed_from_its_manifest_keys(tmp_path):
    """No roles.csv and a users.csv header of 1.1 shape aside, the manifest's 1.2 keys say 1.2."""
    folder = kit.copy(kit.OR12, tmp_path / "u")
    kit.manifest_set(folder, "oneroster.version", None)
    (folder / "roles.csv").unlink()
    kit.manifest_set(folder, "file.roles", "absent")
    guess = guess_version(lambda name: find_file(folder, name), ["file.roles", "file.users"])
    assert guess.version == "1.2" and "file.roles" in guess.why
    result = validate_dir(folder)
    assert result.format == "oneroster-1.2"
    assert "oneroster.header.missing_column" not in result.codes()  # not judged by 1.1's users.csv
