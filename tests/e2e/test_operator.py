"""An operator's tools end to end: JSON reports fetched with sftp, a held run's diff, an audited
approval, and retention enforced by the running daemon, all against a real ``rostergate serve``."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable

import pytest

from tests.conftest import ONEROSTER_11_VALID, Daemon, make_keypair, require_tool, zip_folder
from tests.e2e.test_safeguard import upload, without_students
from tests.reportshape import assert_report_shape
from tests.sftp.helpers import sftp_batch

pytestmark = pytest.mark.e2e


def fetch_report(daemon: Daemon, key, run_id: str, local) -> dict:
    """``reports/<run-id>.json`` downloaded by OpenSSH's sftp, as the district would."""
    result = sftp_batch(daemon, "district-a", f"get reports/{run_id}.json {local}\n", key=key)
    assert result.returncode == 0, result.stderr
    return json.loads(local.read_text())


def wait_until(daemon: Daemon, done: Callable[[dict[str, sqlite3.Row]], bool], timeout: float = 30) -> dict:
    """Poll the daemon's store read-only (cheaper than a CLI process per look) until ``done(runs)``."""
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(f"file:{daemon.data_dir / 'rostergate.db'}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            runs = {row["id"]: row for row in conn.execute("SELECT * FROM runs ORDER BY received_at, id")}
        finally:
            conn.close()
        if done(runs):
            return runs
        assert time.monotonic() < deadline, f"{[dict(r) for r in runs.values()]}\n{daemon.log.read_text()}"
        time.sleep(0.2)


def settled(count: int) -> Callable[[dict[str, sqlite3.Row]], bool]:
    return lambda runs: len(runs) >= count and all(
        r["status"] not in ("received", "processing") for r in runs.values())


def test_reports_diff_approval_audit_and_retention(tmp_path):
    require_tool("sftp")
    outbox = tmp_path / "outbox"
    flows = (f'[[flows]]\naccount = "district-a"\n[flows.downstream]\nurl = "{outbox.as_uri()}"\n'
             "[flows.safeguards]\nmax_removed_percent = 30\nmin_previous_rows = 0\n")
    retention = "[retention]\nkeep_runs = 1\ninterval_seconds = 1\n"
    daemon = Daemon(tmp_path, flows_toml=flows, extra_server_toml=retention).start()
    key = make_keypair(tmp_path)
    daemon.cli("accounts", "create", "district-a", "--public-key", f"{key}.pub", "--no-password",
               "--by", "alice", "--reason", "new district")

    # 1. a real upload; its JSON report, fetched with sftp, matches what was delivered
    upload(daemon, key, zip_folder(ONEROSTER_11_VALID, tmp_path / "full.zip"))
    [first] = wait_until(daemon, settled(1)).values()
    assert first["status"] == "delivered"
    report = fetch_report(daemon, key, first["id"], tmp_path / "first.json")
    assert_report_shape(report)
    [delivered] = list(outbox.iterdir())
    assert report["status"] == "delivered" and report["upload_name"] == "full.zip"
    assert report["deliveries"][0]["sha256"] == hashlib.sha256(delivered.read_bytes()).hexdigest()
    assert report["deliveries"][0]["name"] == delivered.name
    assert report["counts"]["users.csv"]["rows"] == 5

    # 2. a partial upload is held; the daemon's retention removes the first run's files, not its record
    upload(daemon, key, without_students(tmp_path, keep=1, name="partial"))
    held = next(r for r in wait_until(daemon, settled(2)).values() if r["id"] != first["id"])
    assert held["status"] == "held"
    wait_until(daemon, lambda runs: runs[first["id"]]["purged_at"] is not None)
    spool, reports = daemon.data_dir / "spool", daemon.home("district-a") / "reports"
    assert not (spool / first["id"]).exists()
    assert not (reports / f"{first['id']}.json").exists() and not (reports / f"{first['id']}.txt").exists()
    shown = daemon.cli_json("runs", "show", first["id"])
    assert shown["status"] == "delivered" and shown["purged_at"] and shown["deliveries"]
    assert (spool / held["id"] / "upload.zip").exists() and (reports / f"{held['id']}.json").exists()
    assert (daemon.data_dir / "snapshots" / "district-a" / "last-delivered.zip").exists()

    # 3. what the held run would change, by id, against the (purged) first run's delivery
    changes = daemon.cli_json("runs", "diff", held["id"])
    assert changes["compared_with"] == {"run_id": first["id"], "what": "the account's last delivery"}
    assert changes["records"]["students.csv"]["removed"] == ["usr-s2", "usr-s3"]
    assert changes["totals"]["people"] == {"added": 0, "removed": 2, "changed": 0}
    text = daemon.cli("runs", "diff", held["id"]).stdout
    assert "removed:  usr-s2, usr-s3" in text

    # 4. an audited approval; the run is delivered and its JSON report says so
    daemon.cli("runs", "approve", held["id"], "--by", "bob", "--reason", "school closed a class")
    wait_until(daemon, lambda runs: runs[held["id"]]["status"] == "delivered")
    after = fetch_report(daemon, key, held["id"], tmp_path / "held.json")
    assert_report_shape(after)
    assert after["status"] == "delivered" and after["counts"]["users.csv"]["delivered"] == 3

    entries = daemon.cli_json("audit")
    approve = next(e for e in entries if e["action"] == "runs.approve")
    assert (approve["actor"], approve["reason"], approve["run_id"]) == ("bob", "school closed a class", held["id"])
    purged = next(e for e in entries if e["action"] == "runs.purge")
    assert purged["actor"] == "rostergate serve (retention)" and first["id"] in purged["detail"]
    assert entries[-1]["action"] == "accounts.create" and entries[-1]["actor"] == "alice"

    # 5. by hand: nothing more is due (the newest run is kept)
    listed = daemon.cli_json("runs", "purge", "--dry-run")
    assert listed["dry_run"] is True and listed["runs"] == [] and listed["refused"] == []
    daemon.stop()
