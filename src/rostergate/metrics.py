"""Prometheus metrics and ``/healthz``, served only when ``[server] metrics_listen`` is set.

Labels carry account names, statuses, step names, channels and directions only:
never ids or names of people, and never a user name a client tried (failed logins
are counted by method only, so nobody can grow the label set from outside).

The listener (:func:`serve_metrics`) answers ``/metrics`` (the Prometheus text
format) and ``/healthz``: ``200`` and ``{"ok": true, ...}`` when every check the
daemon gives holds, else ``503`` and ``{"ok": false, ...}``; the checks are named
keys (``sftp_listening``, ``pipeline_alive``) so a probe can say which failed.
This module is a leaf (it imports nothing of rostergate): the SFTP server counts
logins and bytes here without reaching the pipeline.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.exposition import MetricsHandler

RUNS_RECEIVED = Counter("rostergate_runs_received_total", "Completed uploads that started a run", ["account"])
RUNS_FINISHED = Counter(
    "rostergate_runs_finished_total", "Runs that reached a final or waiting status", ["account", "status"]
)
STEP_SECONDS = Histogram(
    "rostergate_step_seconds", "Duration of pipeline steps", ["step"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
DELIVERY_FAILURES = Counter(
    "rostergate_delivery_failures_total", "Failed delivery attempts", ["account", "kind"]
)

WORKER_FAILURES = Counter(
    "rostergate_worker_failures_total", "Worker processes lost during a run's CPU work", ["kind"]
)

# What an operator alerts on (issue 12). The gauges that come from the store are set by the
# daemon's watch (rostergate.alerts.notify.Watch.tick) and whenever a run settles.
LAST_DELIVERY = Gauge(
    "rostergate_last_delivery_timestamp_seconds", "Unix time of the account's last verified delivery", ["account"]
)
LAST_UPLOAD = Gauge(
    "rostergate_last_upload_timestamp_seconds", "Unix time of the account's last completed upload", ["account"]
)
ACCOUNT_LATE = Gauge(
    "rostergate_account_late", "1 while the account has missed its [flows.schedule] expect_upload deadline",
    ["account"],
)
RUNS_HELD = Gauge("rostergate_runs_held", "Runs waiting for an operator's approval", ["account"])
DELIVERED_BYTES = Counter("rostergate_delivered_bytes_total", "Bytes delivered downstream (verified)", ["account"])
ALERTS = Counter("rostergate_alerts_total", "Alert sends by channel and outcome (sent, retried, failed, dropped)",
                 ["channel", "outcome"])
# The SFTP server's (rostergate.sftp): logins, refusals, bans and bytes through the tenants' sessions.
LOGINS = Counter("rostergate_sftp_logins_total", "Successful SFTP logins")
LOGIN_FAILURES = Counter("rostergate_sftp_login_failures_total", "Failed SFTP login attempts", ["method"])
BANS = Counter("rostergate_sftp_bans_total", "Bans by the defender: a source address, or an account's password "
               "logins", ["kind"])
SFTP_BYTES = Counter("rostergate_sftp_bytes_total", "Bytes through SFTP file handles, counted when a handle closes "
                     "(in: uploads, out: downloads of reports)", ["direction"])
# What an SFTP server process counts (rostergate.sftp.fleet): it reports its running totals to the
# daemon, whose /metrics serves them (CounterRelay). Only counters: they add up across processes.
SFTP_COUNTERS = (LOGINS, LOGIN_FAILURES, BANS, SFTP_BYTES)
Totals = list[tuple[str, dict[str, str], float]]  # (sample name, labels, running total)


def counter_totals(counters: tuple[Counter, ...] = SFTP_COUNTERS) -> Totals:
    """This process's running totals of ``counters``, one entry per label set (JSON-able)."""
    return [(sample.name, dict(sample.labels), sample.value)
            for counter in counters for metric in counter.collect()
            for sample in metric.samples if sample.name.endswith("_total")]


class CounterRelay:
    """Adds what other processes counted to this process's counters, from the running totals
    each reports (:func:`counter_totals`): a report adds what grew since that process's last one,
    so a lost or repeated report loses or doubles nothing, and a process that ends leaves its
    counts in the totals (counters never go back)."""

    def __init__(self, counters: tuple[Counter, ...] = SFTP_COUNTERS):
        self._counters = {metric.name + "_total": counter for counter in counters for metric in counter.collect()}
        self._seen: dict[tuple[int, str, tuple[tuple[str, str], ...]], float] = {}
        self._lock = threading.Lock()

    def add(self, source: int, totals: Totals) -> None:
        """Apply the running ``totals`` reported by process ``source``; unknown names are ignored."""
        with self._lock:
            for name, labels, value in totals:
                counter = self._counters.get(name)
                if counter is None:
                    continue
                key = (source, name, tuple(sorted(labels.items())))
                grown = float(value) - self._seen.get(key, 0.0)
                if grown > 0:
                    (counter.labels(**labels) if labels else counter).inc(grown)
                    self._seen[key] = float(value)

    def forget(self, source: int) -> None:
        """Process ``source`` has ended: drop what is remembered of it (its counts stay counted)."""
        with self._lock:
            for key in [k for k in self._seen if k[0] == source]:
                del self._seen[key]

Health = Callable[[], Mapping[str, bool]]


def health_document(checks: Mapping[str, bool], details: Mapping[str, Any] | None = None) -> tuple[int, bytes]:
    """The ``/healthz`` answer: HTTP status and JSON body of ``checks`` (each must be true for a 200)."""
    ok = bool(checks) and all(checks.values())
    body = {"ok": ok, **{name: bool(value) for name, value in checks.items()}, **(details or {})}
    return (200 if ok else 503), json.dumps(body, sort_keys=True).encode()


def serve_metrics(listen: str, health: Health | None = None) -> ThreadingHTTPServer:
    """Serve ``/metrics`` and ``/healthz`` on ``HOST:PORT`` in a background thread; returns the server
    (``shutdown()`` stops it, then ``server_close()`` closes its socket). ``health`` gives the named
    checks of ``/healthz`` (none: always 200)."""
    host, _, port = listen.rpartition(":")
    checks = health or (lambda: {"up": True})

    class Handler(MetricsHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
            if self.path.split("?", 1)[0].rstrip("/") != "/healthz":
                super().do_GET()
                return
            try:
                status, body = health_document(checks())
            except Exception as exc:  # noqa: BLE001 - a broken check is an unhealthy daemon, not a dead listener
                status, body = health_document({"checks_ran": False}, {"error": type(exc).__name__})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

    address = host.strip("[]") or "127.0.0.1"

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    server = Server((address, int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="rostergate-metrics", daemon=True).start()
    return server
