"""No upload is lost: kill -9, restarts, downstream outages, retries and give-ups."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ONEROSTER_11_VALID, Daemon, OpenSSHDownstream, make_keypair, require_tool, zip_folder
from tests.sftp.helpers import sftp_batch

pytestmark = pytest.mark.e2e


def upload(daemon: Daemon, key: Path, local: Path, account: str = "district-a") -> None:
    result = sftp_batch(daemon, account, f"put {local}\n", key=key)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def down_sshd(sshd_factory) -> Iterator[OpenSSHDownstream]:
    """An sshd the test starts itself, once the daemon has found it down."""
    require_tool("sftp")
    server = sshd_factory(start=False)
    yield server
    server.stop()


def test_outage_retries_then_delivers_and_survives_kill_9(tmp_path, down_sshd):
    """Downstream down: the run waits in 'retrying'; a kill -9 loses nothing; delivery follows."""
    retries = "max_attempts = 500\nretry_base_seconds = 0.2\nretry_max_seconds = 1\n"
    flows = down_sshd.flow_toml("district-a", extra=retries)
    daemon = Daemon(tmp_path, flows_toml=flows).start()
    key = make_keypair(tmp_path)
    daemon.cli("accounts", "create", "district-a", "--public-key", f"{key}.pub", "--no-password")
    upload(daemon, key, zip_folder(ONEROSTER_11_VALID, tmp_path / "roster.zip"))
    runs = daemon.wait_for_runs(1, timeout=30)
    assert runs[0]["status"] == "retrying"

    daemon.stop(sig=signal.SIGKILL)
    down_sshd.start()
    daemon.start()
    runs = daemon.wait_for_runs(1, timeout=30)
    assert [r["status"] for r in runs] == ["delivered"], daemon.log.read_text()[-3000:]
    assert len(list(down_sshd.dropbox.iterdir())) == 1
    forwards = [s for s in daemon.cli_json("runs", "show", runs[0]["id"])["steps"] if s["name"] == "forward"]
    assert forwards[-1]["status"] == "ok" and any(s["status"] == "failed" for s in forwards[:-1])
    daemon.stop()


def test_gives_up_after_max_attempts_and_reports_failed(tmp_path, down_sshd):
    flows = down_sshd.flow_toml("district-a", extra="max_attempts = 2\nretry_base_seconds = 0.2\n")
    daemon = Daemon(tmp_path, flows_toml=flows).start()
    key = make_keypair(tmp_path)
    daemon.cli("accounts", "create", "district-a", "--public-key", f"{key}.pub", "--no-password")
    upload(daemon, key, zip_folder(ONEROSTER_11_VALID, tmp_path / "roster.zip"))
    deadline_runs = daemon.wait_for_runs(1, timeout=30)
    for _ in range(60):  # bounded: up to ~18 s
        run = daemon.runs()[0]
        if run["status"] == "failed":
            break
        time.sleep(0.3)
    assert run["status"] == "failed", deadline_runs
    report = (daemon.home("district-a") / "reports" / f"{run['id']}.txt").read_text()
    assert "FAILED" in report and "gave up after 2 attempts" in report
    # The operator can retry it once the downstream is back.
    down_sshd.start()
    daemon.cli("runs", "retry", run["id"])
    for _ in range(60):
        if daemon.runs()[0]["status"] == "delivered":
            break
        time.sleep(0.3)
    assert daemon.runs()[0]["status"] == "delivered"
    daemon.stop()


def test_restart_recovers_uploads_caught_between_steps(tmp_path):
    """Killed after a client's close but before the move, or after the move before the record."""
    outbox = tmp_path / "outbox"
    flows = f'[[flows]]\naccount = "district-a"\n[flows.downstream]\nurl = "{outbox.as_uri()}"\n'
    daemon = Daemon(tmp_path, flows_toml=flows)
    daemon.cli("accounts", "create", "district-a")
    # 1. a complete upload still in the home, and a partial one that must stay for a resume
    zip_folder(ONEROSTER_11_VALID, daemon.home("district-a") / "left-in-home.zip")
    whole = (daemon.home("district-a") / "left-in-home.zip").read_bytes()
    (daemon.home("district-a") / "half.zip").write_bytes(whole[: len(whole) // 2])
    # 2. a spooled upload whose run was never recorded
    spooled = daemon.data_dir / "spool" / "20261122-000000-abcdef"
    spooled.mkdir(parents=True)
    zip_folder(ONEROSTER_11_VALID, spooled / "upload.zip")
    (spooled / "meta.json").write_text(json.dumps(
        {"account": "district-a", "upload_name": "spooled.zip", "received_at": "2026-11-22T00:00:00Z"}))
    daemon.start()
    runs = daemon.wait_for_runs(2, timeout=30)
    assert sorted(r["upload_name"] for r in runs) == ["left-in-home.zip", "spooled.zip"]
    # both recovered; the newer supersedes the older undelivered one, exactly one is delivered
    assert sorted(r["status"] for r in runs) == ["delivered", "superseded"]
    assert (daemon.home("district-a") / "half.zip").exists()
    daemon.stop()


def test_run_left_processing_by_a_dead_daemon_is_resumed(tmp_path):
    outbox = tmp_path / "outbox"
    flows = f'[[flows]]\naccount = "district-a"\n[flows.downstream]\nurl = "{outbox.as_uri()}"\n'
    daemon = Daemon(tmp_path, flows_toml=flows)
    daemon.cli("accounts", "create", "district-a")
    spooled = daemon.data_dir / "spool" / "20261122-000000-abcdef"
    spooled.mkdir(parents=True)
    zip_folder(ONEROSTER_11_VALID, spooled / "upload.zip")
    with sqlite3.connect(daemon.data_dir / "rostergate.db") as db:
        db.execute(
            "INSERT INTO runs (id, account, status, upload_name, received_at, spool_path)"
            " VALUES ('20261122-000000-abcdef', 'district-a', 'processing', 'x.zip', '2026-11-22T00:00:00Z', ?)",
            (str(spooled / "upload.zip"),),
        )
    daemon.start()
    runs = daemon.wait_for_runs(1, timeout=30)
    assert [r["status"] for r in runs] == ["delivered"]
    daemon.stop()
