"""`rostergate convert` and `validate` as a district admin meets them (issue 11).

convert validates first and refuses what validation rejects (exit 1, the report on stderr)
unless --force; it accounts for every input row; a problem the check of its output finds is
shown at the uploaded row. Exit 2 is kept for input that cannot be read at all.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from rostergate.cli import main
from tests.conftest import ONEROSTER_11_VALID, zip_folder
from tests.formats import conftest as kit


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _broken(tmp_path: Path) -> Path:
    """The valid 1.1 fixture with one users.csv row one value short (line 7)."""
    folder = Path(shutil.copytree(ONEROSTER_11_VALID, tmp_path / "src"))
    with open(folder / "users.csv", "a") as fh:
        fh.write("usr-x,,,true,org-hs,student,xavier\n")
    return folder


def test_convert_refuses_input_that_validation_rejects(tmp_path):
    out = tmp_path / "asm.zip"
    code, stdout, stderr = run("convert", str(_broken(tmp_path)), "-o", str(out))
    assert code == 1 and not out.exists()
    assert "invalid (oneroster-1.1)" in stderr and "users.csv:7" in stderr and "csv.row_width_mismatch" in stderr
    assert "nothing was converted" in stderr and "--force" in stderr
    assert stdout == ""


def test_convert_force_converts_and_accounts_for_every_row(tmp_path):
    out = tmp_path / "asm.zip"
    code, stdout, stderr = run("convert", str(_broken(tmp_path)), "-o", str(out), "--force")
    assert code == 0 and out.exists(), stderr
    assert "converting input that does not pass validation (--force)" in stderr
    line = next(x for x in stdout.splitlines() if x.strip().startswith("users.csv"))
    read, used, dropped = (int(n) for n in line.replace("=", " ").replace("+", " ").split()[1:])
    assert (read, used, dropped) == (6, 5, 1)  # the five people and the malformed row
    assert "malformed: could not be read as a row" in stdout and "(line 7)" in stdout


def test_convert_uses_the_profile_given_and_defaults_to_asm(tmp_path):
    folder = Path(shutil.copytree(ONEROSTER_11_VALID, tmp_path / "src"))
    kit.edit(folder, "orgs.csv", 0, "status", "active")  # an error in strict, a warning in the asm profile
    assert run("convert", str(folder), "--preview", "1")[0] == 0
    code, _, stderr = run("convert", str(folder), "--preview", "1", "--profile", "strict")
    assert code == 1 and "oneroster.status.forbidden_in_bulk" in stderr


def test_an_id_apple_refuses_is_caught_at_validation_or_traced_to_the_upload(tmp_path):
    """A 1.2-legal id with '@': the asm profile refuses it at the uploaded row; converted anyway
    (strict does not know Apple's rules), the check of the output names users.csv, not students.csv."""
    folder = Path(shutil.copytree(kit.OR12, tmp_path / "src"))
    kit.rename_user(folder, "usr-s1", "usr-s1@north")
    out = tmp_path / "asm.zip"
    code, _, stderr = run("convert", str(folder), "-o", str(out))
    assert code == 1 and "users.csv:4 - sourcedId = 'usr-s1@north'" in stderr and "oneroster.asm.invalid_id" in stderr
    code, _, stderr = run("convert", str(folder), "-o", str(out), "--profile", "strict")
    assert code == 1 and not out.exists()
    assert "users.csv:4 - sourcedId = 'usr-s1@north'" in stderr and "output.asm.value.invalid_id" in stderr
    assert "students.csv person_id" in stderr and "nothing was written" in stderr


@pytest.mark.parametrize("entries", [{}, {"folder/": b""}, {"inner.zip": b"PK\x05\x06" + b"\0" * 18}],
                         ids=["empty", "folders-only", "nested-zip-only"])
def test_an_archive_that_was_read_but_holds_nothing_usable_is_invalid_not_unreadable(tmp_path, entries):
    upload = tmp_path / "upload.zip"
    with zipfile.ZipFile(upload, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    code, stdout, _ = run("validate", str(upload))
    assert code == 1 and "archive.empty" in stdout
    code, _, stderr = run("convert", str(upload), "-o", str(tmp_path / "out.zip"))
    assert code == 1 and "holds no files" in stderr


def test_input_that_cannot_be_read_still_exits_2(tmp_path):
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip archive at all")
    assert run("convert", str(garbage), "-o", str(tmp_path / "out.zip"))[0] == 2
    upload = zip_folder(ONEROSTER_11_VALID, tmp_path / "ok.zip")
    kit.patch_central(upload, 0, 16, "<I", 0xDEADBEEF)  # a damaged entry: its bytes cannot be trusted
    assert run("validate", str(upload))[0] == 2
    assert run("convert", str(upload), "-o", str(tmp_path / "out.zip"))[0] == 2


def test_a_folder_that_is_no_roster_is_invalid(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n")
    code, _, stderr = run("convert", str(folder), "-o", str(tmp_path / "out.zip"))
    assert code == 1 and "neither OneRoster" in stderr
