"""The command line as an operator uses it: exit codes, JSON shapes, errors that say what to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ONEROSTER_11_VALID, zip_folder


def rostergate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rostergate", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_validate_valid_zip_exits_0_with_contract_json(tmp_path):
    upload = zip_folder(ONEROSTER_11_VALID, tmp_path / "ok.zip")
    result = rostergate("validate", str(upload), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["format"] == "oneroster-1.1"
    assert all(set(i) == {"severity", "code", "file", "line", "column", "value", "message"} for i in data["issues"])


def test_validate_invalid_upload_exits_1_and_names_the_missing_file(tmp_path):
    upload = zip_folder(ONEROSTER_11_VALID, tmp_path / "bad.zip", skip=("users.csv",))
    result = rostergate("validate", str(upload), "--json", cwd=tmp_path)
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert any(i["severity"] == "error" and "users.csv" in (i["file"] or "") + i["message"] for i in data["issues"])
    text = rostergate("validate", str(upload), cwd=tmp_path)
    assert text.returncode == 1 and "users.csv" in text.stdout


def test_validate_folder_works_like_a_zip(tmp_path):
    assert rostergate("validate", str(ONEROSTER_11_VALID), cwd=tmp_path).returncode == 0


def test_validate_unreadable_input_exits_2(tmp_path):
    assert rostergate("validate", str(tmp_path / "absent.zip"), cwd=tmp_path).returncode == 2
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip archive at all")
    assert rostergate("validate", str(garbage), cwd=tmp_path).returncode == 2


def test_check_config_names_each_wrong_key_and_exits_non_zero(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nlisten = "x"\n[[flows]]\naccount = "a"\noutput = "pdf"\n')
    result = rostergate("--config", str(config), "check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert "server.listen" in result.stderr and "flows[0].output" in result.stderr
    assert "flows[0].downstream" in result.stderr


def test_check_config_accepts_embedded_defaults(tmp_path):
    import socket

    with socket.socket() as probe:  # the demo listens on 127.0.0.1:2222, which check-config binds to check
        if probe.connect_ex(("127.0.0.1", 2222)) == 0:
            pytest.skip("127.0.0.1:2222 is in use on this machine (a demo daemon?)")
    result = rostergate("--demo", "check-config", cwd=tmp_path)
    assert result.returncode == 0 and "embedded defaults" in result.stdout
    assert "--demo" in result.stderr  # which configuration was used is said on stderr


def test_convert_writes_asm_zip_and_preview(tmp_path):
    out = tmp_path / "asm.zip"
    result = rostergate("convert", str(ONEROSTER_11_VALID), "--to", "asm", "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import zipfile

    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == sorted(
            ["students.csv", "staff.csv", "courses.csv", "classes.csv", "rosters.csv", "locations.csv"])
    preview = rostergate("convert", str(ONEROSTER_11_VALID), "--to", "asm", "--preview", "2", cwd=tmp_path)
    assert preview.returncode == 0 and "students.csv" in preview.stdout


def test_runs_commands_on_an_empty_history(tmp_path):
    assert json.loads(rostergate("--demo", "runs", "list", "--json", cwd=tmp_path).stdout) == []
    assert rostergate("--demo", "runs", "show", "nope", cwd=tmp_path).returncode == 1
    bad = rostergate("--demo", "runs", "list", "--since", "yesterday", cwd=tmp_path)
    assert bad.returncode == 2 and "--since" in bad.stderr
    stats = json.loads(rostergate("--demo", "runs", "stats", "--json", cwd=tmp_path).stdout)
    assert stats["total"] == 0


def test_validate_encoding_policy_converts_or_rejects_windows_1252(tmp_path):
    import shutil

    folder = tmp_path / "cp1252"
    shutil.copytree(ONEROSTER_11_VALID, folder)
    users = (folder / "users.csv").read_text().replace("Adams", "Adamé")
    (folder / "users.csv").write_bytes(users.encode("cp1252"))
    converted = rostergate("validate", str(folder), "--json", cwd=tmp_path)
    assert converted.returncode == 0
    assert "text.encoding_converted" in {i["code"] for i in json.loads(converted.stdout)["issues"]}
    rejected = rostergate("validate", str(folder), "--encoding", "reject", "--json", cwd=tmp_path)
    assert rejected.returncode == 1
    assert "text.encoding_rejected" in {i["code"] for i in json.loads(rejected.stdout)["issues"]}


def test_runs_list_shows_the_newest_1000_unless_told_otherwise(tmp_path):
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
    shown = rostergate("--config", str(config), "runs", "list", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    runs = json.loads(shown.stdout)
    assert len(runs) == RUNS_LIST_DEFAULT_LIMIT and runs[0]["id"] == f"20261122-{total - 1:06d}-000000"
    assert "there are more: --limit N or --all" in shown.stderr
    every = rostergate("--config", str(config), "runs", "list", "--all", "--json", cwd=tmp_path)
    assert len(json.loads(every.stdout)) == total and "there are more" not in every.stderr
    assert len(json.loads(rostergate("--config", str(config), "runs", "list", "--limit", "5", "--json",
                                     cwd=tmp_path).stdout)) == 5
    both = rostergate("--config", str(config), "runs", "list", "--all", "--limit", "5", cwd=tmp_path)
    assert both.returncode == 2 and "--limit and --all" in both.stderr
