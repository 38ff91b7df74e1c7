"""Prometheus metrics, served only when ``[server] metrics_listen`` is set.

Labels carry account names, statuses and step names only: never ids or names
of people.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

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


def serve_metrics(listen: str) -> None:
    """Start the metrics HTTP endpoint on ``HOST:PORT`` (a background thread)."""
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1")
