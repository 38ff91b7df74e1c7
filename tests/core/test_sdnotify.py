"""sd_notify over a unix datagram socket: messages arrive, and a reader that stops reading never blocks us."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from rostergate.sdnotify import Notifier


def _listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    return sock


def test_messages_reach_the_manager_and_the_variables_leave_the_environment(tmp_path):
    sock = _listener(tmp_path / "notify")
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
    notifier = Notifier(env)
    try:
        assert env == {}  # no child inherits them
        assert notifier.ready("listening") is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=listening\n"
    finally:
        notifier.close()
        sock.close()


def test_a_manager_that_stops_reading_costs_dropped_pings_not_a_stalled_loop(tmp_path):
    sock = _listener(tmp_path / "notify")  # bound, never read: its queue fills after a few datagrams
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    try:
        started = time.monotonic()
        results = [notifier.watchdog() for _ in range(500)]
        elapsed = time.monotonic() - started
        assert results[0] is True
        assert results[-1] is False  # the full queue is reported, not waited on
        assert elapsed < 5, f"sending blocked for {elapsed:.1f}s"
    finally:
        notifier.close()
        sock.close()
