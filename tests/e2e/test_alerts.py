"""Alerts, logs, metrics and /healthz through the real daemon: a district uploads a bad ZIP with OpenSSH's
``sftp`` and the operator's webhook (a real HTTP server on 127.0.0.1) receives a signed run.rejected."""

from __future__ import annotations

import json
import re
import sqlite3
import time

import pytest

from tests.alerts.conftest import WEBHOOK_SECRET, secret_file
from tests.alerts.receivers import WebhookReceiver
from tests.conftest import ONEROSTER_11_VALID, Daemon, free_port, http_get, require_tool, zip_folder
from tests.sftp.helpers import sftp_batch

pytestmark = pytest.mark.e2e


def settled_runs(daemon: Daemon, count: int, timeout: float = 30.0) -> dict[str, dict[str, str]]:
    """Wait (polling the store read-only: cheaper than the CLI) until ``count`` runs rest; by upload name."""
    deadline = time.monotonic() + timeout
    rows: list[sqlite3.Row] = []
    while time.monotonic() < deadline:
        with sqlite3.connect(f"file:{daemon.data_dir / 'rostergate.db'}?mode=ro", uri=True, timeout=10) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT id, upload_name, status FROM runs").fetchall()
        if len(rows) >= count and not any(r["status"] in ("received", "processing") for r in rows):
            return {r["upload_name"]: dict(r) for r in rows}
        time.sleep(0.1)
    raise AssertionError(f"expected {count} settled runs, have {[dict(r) for r in rows]}\n{daemon.log.read_text()}")


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match[1])


def test_a_bad_upload_reaches_the_operators_webhook_and_the_metrics(tmp_path):
    require_tool("sshpass")
    receiver = WebhookReceiver()
    secret = secret_file(tmp_path, "webhook.secret", WEBHOOK_SECRET)
    metrics_port = free_port()
    outbox = tmp_path / "outbox"
    flows = (f'[alerts]\nwebhook_url = "{receiver.url}"\nwebhook_secret_file = "{secret}"\n'
             f"check_interval_seconds = 0.5\n"
             f'[[flows]]\naccount = "district-a"\n[flows.downstream]\nurl = "{outbox.as_uri()}"\n'
             f'[flows.schedule]\nexpect_upload = "every 24h"\n')
    daemon = Daemon(tmp_path, flows_toml=flows, extra_server_toml=f'metrics_listen = "127.0.0.1:{metrics_port}"')
    password = daemon.cli_json("accounts", "create", "district-a")["password"]
    bad = zip_folder(ONEROSTER_11_VALID, tmp_path / "broken.zip", skip=("users.csv",))
    good = zip_folder(ONEROSTER_11_VALID, tmp_path / "roster.zip")
    daemon.start()
    try:
        status, body = http_get(f"http://127.0.0.1:{metrics_port}/healthz")
        assert status == 200, body
        assert json.loads(body) == {"ok": True, "sftp_listening": True, "pipeline_alive": True}

        for upload, count in ((bad, 1), (good, 2)):  # one after the other: a newer upload would supersede
            result = sftp_batch(daemon, "district-a", f"put {upload}\n", password=password)
            assert result.returncode == 0, result.stderr
            by_name = settled_runs(daemon, count)
        assert by_name["broken.zip"]["status"] == "rejected" and by_name["roster.zip"]["status"] == "delivered"

        rejected_hook, recovered_hook = receiver.wait_for(2)  # the good upload after the bad one: recovered
        assert recovered_hook.json()["event"] == "run.recovered"
        assert recovered_hook.json()["run_id"] == by_name["roster.zip"]["id"]
        received = rejected_hook
        assert received.signed_with(WEBHOOK_SECRET)
        body = received.json()
        assert (body["event"], body["account"], body["status"]) == ("run.rejected", "district-a", "rejected")
        assert body["run_id"] == by_name["broken.zip"]["id"] and body["reason"]["code"] == "upload_invalid"
        assert body["counts"]["errors"] >= 1
        assert body["inspect"] == f"rostergate --config {daemon.config} runs show {body['run_id']}"
        report = (daemon.home("district-a") / "reports" / f"{body['run_id']}.txt").read_text()
        assert "has been alerted to this run (by webhook)" in report

        text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")[1].decode()
        assert metric(text, "rostergate_sftp_logins_total") >= 1
        assert metric(text, 'rostergate_sftp_bytes_total{direction="in"}') == bad.stat().st_size + good.stat().st_size
        assert metric(text, 'rostergate_last_delivery_timestamp_seconds{account="district-a"}') > 0
        assert metric(text, 'rostergate_runs_held{account="district-a"}') == 0
        assert metric(text, 'rostergate_account_late{account="district-a"}') == 0
        assert metric(text, 'rostergate_alerts_total{channel="webhook",outcome="sent"}') == 2
        assert metric(text, 'rostergate_delivered_bytes_total{account="district-a"}') > 0

        stats = daemon.cli_json("runs", "stats")["accounts"]["district-a"]
        assert stats["late"] is False and stats["expect_upload"] == "every 24h"
        assert stats["last_upload"] and stats["last_delivery"]
    finally:
        daemon.stop()
        receiver.stop()
    # Off a terminal every line of serve is one JSON object: the banner, the rejection (a warning with its code).
    events = [json.loads(line) for line in daemon.log.read_text().splitlines()]
    assert "daemon_banner" in [e["event"] for e in events]
    [rejected] = [e for e in events if e["event"] == "run_finished" and e["status"] == "rejected"]
    assert rejected["level"] == "warning" and rejected["reason"] == "upload_invalid" and rejected["errors"] >= 1
    assert not any(e["level"] in ("error", "critical") for e in events), [e for e in events if e["level"] == "error"]
