"""The command line as an operator uses it: exit codes, JSON shapes, errors that say what to do (in this
process, through click's CliRunner: tests/core/conftest.py)."""

from __future__ import annotations

import json
import shutil
import socket
import zipfile

import pytest

from tests.conftest import ONEROSTER_11_VALID, zip_folder


def test_validate_valid_zip_exits_0_with_contract_json(rostergate, tmp_path):
    upload = zip_folder(ONEROSTER_11_VALID, tmp_path / "ok.zip")
    result = rostergate("validate", str(upload), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["format"] == "oneroster-1.1"
    assert all(set(i) == {"severity", "code", "file", "line", "column", "value", "message"} for i in data["issues"])


def test_validate_invalid_upload_exits_1_and_names_the_missing_file(rostergate, tmp_path):
    upload = zip_folder(ONEROSTER_11_VALID, tmp_path / "bad.zip", skip=("users.csv",))
    result = rostergate("validate", str(upload), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert any(i["severity"] == "error" and "users.csv" in (i["file"] or "") + i["message"] for i in data["issues"])
    text = rostergate("validate", str(upload))
    assert text.exit_code == 1 and "users.csv" in text.stdout


def test_validate_folder_works_like_a_zip(rostergate):
    assert rostergate("validate", str(ONEROSTER_11_VALID)).exit_code == 0


def test_validate_unreadable_input_exits_2(rostergate, tmp_path):
    assert rostergate("validate", str(tmp_path / "absent.zip")).exit_code == 2
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip archive at all")
    assert rostergate("validate", str(garbage)).exit_code == 2


def test_check_config_names_each_wrong_key_and_exits_non_zero(rostergate, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nlisten = "x"\n[[flows]]\naccount = "a"\noutput = "pdf"\n')
    result = rostergate("--config", str(config), "check-config")
    assert result.exit_code == 2
    assert "server.listen" in result.stderr and "flows[0].output" in result.stderr
    assert "flows[0].downstream" in result.stderr


def test_check_config_accepts_embedded_defaults(rostergate):
    with socket.socket() as probe:  # the demo listens on 127.0.0.1:2222, which check-config binds to check
        if probe.connect_ex(("127.0.0.1", 2222)) == 0:
            pytest.skip("127.0.0.1:2222 is in use on this machine (a demo daemon?)")
    result = rostergate("--demo", "check-config")
    assert result.exit_code == 0 and "embedded defaults" in result.stdout
    assert "--demo" in result.stderr  # which configuration was used is said on stderr


def test_convert_writes_asm_zip_and_preview(rostergate, tmp_path):
    out = tmp_path / "asm.zip"
    result = rostergate("convert", str(ONEROSTER_11_VALID), "--to", "asm", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == sorted(
            ["students.csv", "staff.csv", "courses.csv", "classes.csv", "rosters.csv", "locations.csv"])
    preview = rostergate("convert", str(ONEROSTER_11_VALID), "--to", "asm", "--preview", "2")
    assert preview.exit_code == 0 and "students.csv" in preview.stdout


def test_runs_commands_on_an_empty_history(rostergate):
    assert json.loads(rostergate("--demo", "runs", "list", "--json").stdout) == []
    assert rostergate("--demo", "runs", "show", "nope").exit_code == 1
    bad = rostergate("--demo", "runs", "list", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since" in bad.stderr
    stats = json.loads(rostergate("--demo", "runs", "stats", "--json").stdout)
    assert stats["total"] == 0


def test_validate_encoding_policy_converts_or_rejects_windows_1252(rostergate, tmp_path):
    folder = tmp_path / "cp1252"
    shutil.copytree(ONEROSTER_11_VALID, folder)
    users = (folder / "users.csv").read_text().replace("Adams", "Adamé")
    (folder / "users.csv").write_bytes(users.encode("cp1252"))
    converted = rostergate("validate", str(folder), "--json")
    assert converted.exit_code == 0
    assert "text.encoding_converted" in {i["code"] for i in json.loads(converted.stdout)["issues"]}
    rejected = rostergate("validate", str(folder), "--encoding", "reject", "--json")
    assert rejected.exit_code == 1
    assert "text.encoding_rejected" in {i["code"] for i in json.loads(rejected.stdout)["issues"]}


def test_runs_list_shows_the_newest_1000_unless_told_otherwise(rostergate, tmp_path):
    """A history of any size answers at once; what is left out is said on stderr, never in the JSON."""
    from rostergate import store
    from rostergate.cli import RUNS_LIST_DEFAULT_LIMIT

    conn = store.connect(tmp_path / "var")
    total = RUNS_LIST_DEFAULT_LIMIT + 3
    with conn:
        conn.executemany(
            "INSERT INTO runs (id, account, status, upload_name, received_at, spool_path) VALUES (?, 'a', 'delivered',"
            " 'r.zip', ?, '/nowhere')",
            [(f"20261122-{n:06d}-000000", f"2026-11-22T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z")
             for n in range(total)])
    conn.close()
    config = tmp_path / "rostergate.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n')
    shown = rostergate("--config", str(config), "runs", "list", "--json")
    assert shown.exit_code == 0, shown.stderr
    runs = json.loads(shown.stdout)
    assert len(runs) == RUNS_LIST_DEFAULT_LIMIT and runs[0]["id"] == f"20261122-{total - 1:06d}-000000"
    assert "there are more: --limit N or --all" in shown.stderr
    every = rostergate("--config", str(config), "runs", "list", "--all", "--json")
    assert len(json.loads(every.stdout)) == total and "there are more" not in every.stderr
    assert len(json.loads(rostergate("--config", str(config), "runs", "list", "--limit", "5", "--json").stdout)) == 5
    both = rostergate("--config", str(config), "runs", "list", "--all", "--limit", "5")
    assert both.exit_code == 2 and "--limit and --all" in both.stderr
