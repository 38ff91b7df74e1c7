"""The metrics listener: /metrics as Prometheus text, /healthz as JSON with 200 or 503."""

from __future__ import annotations

import json

from rostergate import metrics
from tests.conftest import free_port, http_get


def test_healthz_is_200_while_every_check_holds_and_503_naming_the_one_that_does_not():
    state = {"sftp_listening": True, "pipeline_alive": True}
    port = free_port()
    server = metrics.serve_metrics(f"127.0.0.1:{port}", lambda: dict(state))
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body) == {"ok": True, "sftp_listening": True, "pipeline_alive": True}
        state["pipeline_alive"] = False
        status, body = http_get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and json.loads(body)["pipeline_alive"] is False and json.loads(body)["ok"] is False
        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b"rostergate_runs_received_total" in body
    finally:
        server.shutdown()
        server.server_close()


def test_a_check_that_raises_is_an_unhealthy_answer_not_a_dead_listener():
    def broken() -> dict[str, bool]:
        raise RuntimeError("no")

    port = free_port()
    server = metrics.serve_metrics(f"127.0.0.1:{port}", broken)
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and json.loads(body) == {"ok": False, "checks_ran": False, "error": "RuntimeError"}
        assert http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_the_relay_adds_what_each_process_counted_once_and_keeps_it_after_the_process_ends():
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    logins = Counter("t_logins_total", "logins", registry=registry)
    sent = Counter("t_bytes_total", "bytes", ["direction"], registry=registry)
    relay = metrics.CounterRelay((logins, sent))
    child = CollectorRegistry()
    child_logins = Counter("t_logins_total", "logins", registry=child)
    child_bytes = Counter("t_bytes_total", "bytes", ["direction"], registry=child)
    child_logins.inc(3)
    child_bytes.labels("in").inc(100)
    report = metrics.counter_totals((child_logins, child_bytes))
    assert sorted(report) == [("t_bytes_total", {"direction": "in"}, 100.0), ("t_logins_total", {}, 3.0)]
    relay.add(101, report)
    relay.add(101, report)  # the same totals again: nothing grew
    relay.add(202, [("t_logins_total", {}, 2.0), ("not_ours_total", {}, 9.0)])  # another process; unknown ignored
    assert registry.get_sample_value("t_logins_total") == 5
    child_logins.inc()
    relay.add(101, metrics.counter_totals((child_logins, child_bytes)))
    assert registry.get_sample_value("t_logins_total") == 6
    assert registry.get_sample_value("t_bytes_total", {"direction": "in"}) == 100
    relay.forget(101)  # the process ended: its counts stay counted
    assert registry.get_sample_value("t_logins_total") == 6
