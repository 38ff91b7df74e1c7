"""Prometheus metrics: counts by status and step, no personal data in labels."""

import urllib.request

import pytest

from tests.conftest import ONEROSTER_11_VALID, Daemon, free_port, zip_folder

pytestmark = pytest.mark.e2e


def test_metrics_endpoint_counts_runs_and_steps(tmp_path):
    outbox = tmp_path / "outbox"
    port = free_port()
    flows = f'[[flows]]\naccount = "district-a"\n[flows.downstream]\nurl = "{outbox.as_uri()}"\n'
    daemon = Daemon(tmp_path, flows_toml=flows, extra_server_toml=f'metrics_listen = "127.0.0.1:{port}"')
    daemon.cli("accounts", "create", "district-a")
    zip_folder(ONEROSTER_11_VALID, daemon.home("district-a") / "roster.zip")  # taken on start
    daemon.start()
    try:
        assert daemon.wait_for_runs(1)[0]["status"] == "delivered"
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        daemon.stop()
    assert 'rostergate_runs_received_total{account="district-a"} 1.0' in text
    assert 'rostergate_runs_finished_total{account="district-a",status="delivered"} 1.0' in text
    assert 'rostergate_step_seconds_count{step="validate"} 1.0' in text
    assert "usr-s1" not in text and "Adams" not in text
