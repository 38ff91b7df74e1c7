"""The daemon under a service manager: readiness and watchdog, reload (SIGHUP), drain and stop (SIGTERM).

Real daemon, real paramiko client over loopback, and a unix datagram socket of
our own standing in for systemd's ``NOTIFY_SOCKET``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from rostergate import store
from rostergate.history import History
from tests.conftest import ONEROSTER_11_VALID, Daemon, local_flow, zip_folder

pytestmark = pytest.mark.e2e


def events(daemon: Daemon) -> list[dict]:
    found = []
    for line in daemon.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                pass
    return found


def wait_for_event(daemon: Daemon, name: str, timeout: float = 30.0, count: int = 1) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        matching = [e for e in events(daemon) if e.get("event") == name]
        if len(matching) >= count:
            return matching[count - 1]
        time.sleep(0.1)
    raise AssertionError(f"no {name!r} in the daemon's log after {timeout}s:\n{daemon.log.read_text()[-3000:]}")


def wait_for_exit(daemon: Daemon, timeout: float = 30.0) -> int:
    assert daemon.process is not None
    return daemon.process.wait(timeout=timeout)


def send(daemon: Daemon, sig: int) -> None:
    assert daemon.process is not None
    daemon.process.send_signal(sig)


class Upload:
    """A paramiko upload held open in the middle, to do something to the daemon meanwhile."""

    def __init__(self, daemon: Daemon, account: str, password: str, data: bytes, name: str = "roster.zip"):
        self.transport = paramiko.Transport(("127.0.0.1", daemon.port))
        self.transport.connect(username=account, password=password)
        self.sftp = paramiko.SFTPClient.from_transport(self.transport)
        self.handle = self.sftp.open(name, "wb")
        self.data = data
        self.half = len(data) // 2
        self.handle.write(data[: self.half])
        self.handle.flush()  # the first half is on the server, acknowledged

    def finish(self) -> None:
        self.handle.write(self.data[self.half :])
        self.handle.close()  # the close is what completes an upload

    def close(self) -> None:
        self.transport.close()


def create_account(daemon: Daemon, name: str) -> str:
    return daemon.cli_json("accounts", "create", name)["password"]


@pytest.fixture
def roster(tmp_path: Path) -> bytes:
    return zip_folder(ONEROSTER_11_VALID, tmp_path / "roster.zip").read_bytes()


def put(daemon: Daemon, account: str, password: str, data: bytes, name: str = "roster.zip") -> None:
    upload = Upload(daemon, account, password, data, name)
    upload.finish()
    upload.close()


# -- readiness, watchdog, stop: what systemd hears ------------------------------------------
@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = f"/tmp/rg-notify-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    yield sock, path
    sock.close()
    Path(path).unlink(missing_ok=True)


def receive(sock: socket.socket, wanted: str, timeout: float = 30.0) -> list[dict[str, str]]:
    """Datagrams until one has ``wanted`` (KEY=VALUE); returns them all, parsed."""
    seen: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            continue
        fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
        seen.append(fields)
        key, value = wanted.split("=", 1)
        if fields.get(key) == value:
            return seen
    raise AssertionError(f"no {wanted} within {timeout}s; got {seen}")


def interrupted_run(daemon: Daemon, roster: bytes, run_id: str) -> None:
    """A run a killed daemon left 'processing', with its upload really in the spool."""
    spooled = daemon.data_dir / "spool" / run_id / "upload.zip"
    spooled.parent.mkdir(parents=True)
    spooled.write_bytes(roster)
    conn = store.connect(daemon.data_dir)
    history = History(conn)
    history.record_received(run_id, "district-a", "roster.zip", str(spooled), len(roster),
                            hashlib.sha256(roster).hexdigest())
    history.set_status(run_id, "processing")
    conn.close()


def test_ready_only_once_listening_and_runs_resumed_then_watchdog_reload_and_stopping(
        tmp_path, notify_socket, roster):
    sock, path = notify_socket
    daemon = Daemon(tmp_path, local_flow("district-a", tmp_path / "outbox"))
    create_account(daemon, "district-a")
    interrupted_run(daemon, roster, "20261130-120000-abcdef")
    with open(daemon.log, "ab") as log:
        daemon.process = subprocess.Popen(
            [sys.executable, "-m", "rostergate", "--config", str(daemon.config), "serve"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"},
        )
    try:
        ready = receive(sock, "READY=1")
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=2):
            pass  # READY=1 came after the port listens
        check = sqlite3.connect(daemon.data_dir / "rostergate.db")
        status = check.execute("SELECT status FROM runs WHERE id = '20261130-120000-abcdef'").fetchone()[0]
        check.close()
        assert status != "processing" or wait_for_event(daemon, "runs_resumed")  # ... and after it was queued again
        assert ready[-1]["STATUS"].startswith("listening on")
        receive(sock, "WATCHDOG=1", timeout=10)
        receive(sock, "WATCHDOG=1", timeout=10)  # again: it keeps coming from the event loop

        send(daemon, signal.SIGHUP)
        reload = receive(sock, "READY=1", timeout=20)
        assert any(m.get("RELOADING") == "1" for m in reload)

        send(daemon, signal.SIGTERM)
        stopping = receive(sock, "STOPPING=1", timeout=20)
        assert int(stopping[-1]["EXTEND_TIMEOUT_USEC"]) >= 60_000_000  # asks for the drain's grace
        assert wait_for_exit(daemon, timeout=120) == 0
    finally:
        daemon.stop()


def test_without_notify_socket_nothing_is_sent_and_children_do_not_inherit_it():
    from rostergate.sdnotify import Notifier

    environ = {"NOTIFY_SOCKET": "/nonexistent/socket", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    notifier = Notifier(environ)
    assert environ == {}  # removed, so the worker processes never speak for the daemon
    assert notifier.enabled and notifier.watchdog_seconds is None  # the watchdog is another process's
    assert notifier.ready("x") is False  # no manager listening: no error, the daemon runs on
    notifier.close()
    assert Notifier({}).ready("x") is False


def test_abstract_notify_socket_names_are_understood():
    from rostergate.sdnotify import Notifier

    name = f"rostergate-test-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        assert notifier.watchdog_seconds == 2.0
        assert notifier.watchdog()
        assert sock.recv(100) == b"WATCHDOG=1\n"
        notifier.close()


# -- SIGHUP -------------------------------------------------------------------------------
def test_reload_under_a_live_upload_keeps_the_session_and_applies_the_new_flows(tmp_path, roster):
    outbox = tmp_path / "outbox"
    daemon = Daemon(tmp_path, local_flow("district-a", outbox)).start()
    try:
        password_a = create_account(daemon, "district-a")
        password_b = create_account(daemon, "district-b")
        upload = Upload(daemon, "district-a", password_a, roster)
        # The new configuration adds a flow for district-b.
        text = daemon.config.read_text() + local_flow("district-b", tmp_path / "outbox-b")
        daemon.config.write_text(text)
        send(daemon, signal.SIGHUP)
        wait_for_event(daemon, "reloaded")
        upload.finish()  # the session and its half-written upload survived the reload
        upload.close()
        put(daemon, "district-b", password_b, roster)  # the new flow works at once
        runs = daemon.wait_for_runs(2, timeout=60)
        assert sorted((r["account"], r["status"]) for r in runs) == [
            ("district-a", "delivered"), ("district-b", "delivered")], daemon.log.read_text()[-3000:]
        assert len(list(outbox.glob("*.zip"))) == 1 and len(list((tmp_path / "outbox-b").glob("*.zip"))) == 1
        assert daemon.process is not None and daemon.process.poll() is None
    finally:
        daemon.stop()


@pytest.mark.parametrize("broken, key", [
    ('[server]\nlisten = "nowhere"\n', "server.listen"),
    ("flows = 3\n[[flows\n", "not valid TOML"),
    ("ACCOUNT", "flows[1].account"),  # parses, but the flow's account does not exist
])
def test_reload_with_a_broken_config_keeps_the_old_one(tmp_path, roster, broken, key):
    outbox = tmp_path / "outbox"
    daemon = Daemon(tmp_path, local_flow("district-a", outbox)).start()
    try:
        password = create_account(daemon, "district-a")
        good = daemon.config.read_text()
        if broken == "ACCOUNT":
            broken = good + local_flow("nobody", tmp_path / "outbox-n")
        daemon.config.write_text(broken)
        send(daemon, signal.SIGHUP)
        refused = wait_for_event(daemon, "reload_refused")
        assert any(key in problem for problem in refused["problems"]), refused
        assert daemon.process is not None and daemon.process.poll() is None
        daemon.config.write_text(good)  # for this test's own CLI calls; the daemon kept it all along
        put(daemon, "district-a", password, roster)  # the old configuration still serves
        runs = daemon.wait_for_runs(1, timeout=60)
        assert runs[0]["status"] == "delivered"
    finally:
        daemon.stop()


# -- SIGTERM ------------------------------------------------------------------------------
def test_stop_lets_an_upload_in_progress_finish_and_keeps_its_run_for_the_next_start(tmp_path, roster):
    outbox = tmp_path / "outbox"
    daemon = Daemon(tmp_path, local_flow("district-a", outbox), "stop_grace_seconds = 60").start()
    try:
        password = create_account(daemon, "district-a")
        upload = Upload(daemon, "district-a", password, roster)
        send(daemon, signal.SIGTERM)
        stopping = wait_for_event(daemon, "daemon_stopping")
        assert stopping["uploads_in_progress"] == 1
        with pytest.raises(OSError):  # no new connections while draining
            socket.create_connection(("127.0.0.1", daemon.port), timeout=2).close()
        time.sleep(0.5)
        assert daemon.process is not None and daemon.process.poll() is None  # still waiting for the upload
        upload.finish()
        upload.close()
        assert wait_for_exit(daemon) == 0
        assert wait_for_event(daemon, "daemon_stopped")["uploads_cut_short"] == 0
        runs = daemon.runs()
        assert [r["status"] for r in runs] == ["received"]  # recorded; not started while stopping
        daemon.start()
        assert daemon.wait_for_runs(1, timeout=60)[0]["status"] == "delivered"
    finally:
        daemon.stop()


def test_a_second_sigterm_stops_at_once(tmp_path, roster):
    daemon = Daemon(tmp_path, local_flow("district-a", tmp_path / "outbox"), "stop_grace_seconds = 300").start()
    try:
        password = create_account(daemon, "district-a")
        upload = Upload(daemon, "district-a", password, roster)  # never finished
        send(daemon, signal.SIGTERM)
        wait_for_event(daemon, "daemon_stopping")
        started = time.monotonic()
        send(daemon, signal.SIGTERM)
        assert wait_for_exit(daemon, timeout=20) == 0
        assert time.monotonic() - started < 15
        assert wait_for_event(daemon, "stop_forced")
        assert wait_for_event(daemon, "daemon_stopped")["uploads_cut_short"] == 1
        upload.close()
    finally:
        daemon.stop()


def wait_for_status(daemon: Daemon, status: str, timeout: float = 60.0) -> str:
    """The id of the first run to reach ``status``, read from the store every 20 ms (a CLI call is too slow
    to catch a run while its worker starts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(daemon.data_dir / "rostergate.db") as conn:
                row = conn.execute("SELECT id FROM runs WHERE status = ?", (status,)).fetchone()
        except sqlite3.Error:
            row = None
        if row:
            return str(row[0])
        time.sleep(0.02)
    raise AssertionError(f"no run became {status} within {timeout}s: {daemon.runs()}")


def test_stop_lets_a_run_in_progress_finish_within_the_grace(tmp_path, roster):
    daemon = Daemon(tmp_path, local_flow("district-a", tmp_path / "outbox"), "stop_grace_seconds = 120").start()
    try:
        password = create_account(daemon, "district-a")
        put(daemon, "district-a", password, roster)
        wait_for_status(daemon, "processing")  # its worker is still starting (imports pandas, pyarrow)
        send(daemon, signal.SIGTERM)
        assert wait_for_event(daemon, "daemon_stopping")["runs_in_progress"] is True
        assert wait_for_exit(daemon, timeout=120) == 0
        assert [r["status"] for r in daemon.runs()] == ["delivered"]
    finally:
        daemon.stop()


def test_a_run_cut_short_by_the_grace_is_recorded_and_resumes_on_the_next_start(tmp_path, roster):
    daemon = Daemon(tmp_path, local_flow("district-a", tmp_path / "outbox"), "stop_grace_seconds = 0").start()
    try:
        password = create_account(daemon, "district-a")
        put(daemon, "district-a", password, roster)
        run_id = wait_for_status(daemon, "processing")
        send(daemon, signal.SIGTERM)
        assert wait_for_exit(daemon) == 0
        interrupted = wait_for_event(daemon, "run_interrupted")
        assert interrupted["run_id"] == run_id and interrupted["status"] == "processing"
        daemon.start()
        assert daemon.wait_for_runs(1, timeout=60)[0]["status"] == "delivered"
    finally:
        daemon.stop()
