"""Tenant-supplied text never reaches the operator's terminal raw: every control character is escaped.

The commands run through click's CliRunner with ``color=True``: click then passes every byte through, as
on a terminal (off one it would strip ANSI sequences itself and hide a failure to escape them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rostergate import store
from rostergate.history import History
from rostergate.printable import json_safe, printable
from tests.conftest import ONEROSTER_11_VALID

HOSTILE = "\x1b]0;owned\x07\x1b[2J\u202eexe.piz\x9b31m.zip"
RAW_CONTROLS = ("\x1b", "\x07", "\u202e", "\x9b")


@pytest.fixture
def state_with_a_hostile_upload_name(tmp_path: Path) -> Path:
    config = tmp_path / "rostergate.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n')
    conn = store.connect(tmp_path / "var")
    spooled = tmp_path / "var" / "spool" / "20261130-120000-abcdef" / "upload.zip"  # never processed here
    History(conn).record_received("20261130-120000-abcdef", "district-a", HOSTILE, str(spooled), 1, "0" * 64)
    conn.close()
    return config


@pytest.mark.parametrize("command", [("runs", "list"), ("runs", "show", "20261130-120000-abcdef")])
def test_run_listings_escape_control_characters(state_with_a_hostile_upload_name, rostergate, command):
    result = rostergate("--config", str(state_with_a_hostile_upload_name), *command, color=True)
    assert result.exit_code == 0, result.stderr
    assert not any(c in result.stdout + result.stderr for c in RAW_CONTROLS), repr(result.stdout)
    assert "\\x1b]0;owned\\x07" in result.stdout and "\\u202e" in result.stdout


def test_json_output_keeps_the_value_but_no_raw_control(state_with_a_hostile_upload_name, rostergate):
    result = rostergate("--config", str(state_with_a_hostile_upload_name), "runs", "list", "--json", color=True)
    assert result.exit_code == 0, result.stderr
    assert not any(c in result.stdout for c in RAW_CONTROLS)
    assert json.loads(result.stdout)[0]["upload_name"] == HOSTILE  # same value, escaped in transit


def test_validate_report_escapes_a_hostile_csv_value(rostergate, tmp_path):
    folder = tmp_path / "upload"
    shutil.copytree(ONEROSTER_11_VALID, folder)
    users = folder / "users.csv"
    lines = users.read_text().splitlines()
    header = lines[0].split(",")
    first = lines[1].split(",")
    first[header.index("role")] = "\x1b[31mteacher\x1b[0m"  # not a role: reported with its value
    users.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    result = rostergate("validate", str(folder), color=True)
    assert result.exit_code == 1
    assert "\x1b" not in result.stdout and "\\x1b[31mteacher" in result.stdout


def test_printable_escapes_only_controls():
    assert printable("Zoë Ångström.zip") == "Zoë Ångström.zip"
    assert printable("a\nb") == "a\\x0ab"
    assert printable("a\nb", keep_newlines=True) == "a\nb"
    assert json.loads(json_safe(json.dumps("\x85\u2066x", ensure_ascii=False))) == "\x85\u2066x"


def test_text_that_str_isprintable_accepts_has_nothing_to_escape():
    """printable() returns such text as it is without a look (its fast path): over all of Unicode, no
    character that str.isprintable() accepts is one printable() escapes."""
    accepted = "".join(c for c in map(chr, range(0x110000)) if c.isprintable())
    assert printable(accepted + "\x1b") == accepted + "\\x1b"  # the escaping path, on every such character
    assert all(not c.isprintable() for c in "\x00\x1f\x7f\x85\x9f\u061c\u200e\u202e\u2066\u2069")
