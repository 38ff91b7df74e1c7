"""``[server] sftp_processes = 2``: two SFTP server processes on one port, one intake in the daemon.

The kernel spreads connections over the processes (SO_REUSEPORT) by a hash of the
source port, so a test cannot pick the process: it makes enough connections that
both serve (the chance that 12 all land in one of 2 is 1 in 2048) and reads which
process served each from the ``sftp_pid`` field of the log lines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import paramiko
import pytest

from tests.conftest import Daemon, can_bind, free_port, local_flow
from tests.sftp.helpers import paramiko_client, roster_zip, wait_until

A = "district-a"
TRIES = 12
SERVER = """
sftp_processes = 2
stop_grace_seconds = 5
[server.limits]
max_sessions_per_account = 1
[server.defender]
threshold = 4
score_unknown_user = 2
ban_seconds = 120
failed_password_delay_seconds = 0.05
"""
WRONG = "Wrong-Password-Never-Logged-9"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if not can_bind("127.0.0.2"):
        pytest.skip("cannot bind 127.0.0.2 as a client source address here")
    root = tmp_path_factory.mktemp("sftp-processes")
    daemon = Daemon(root, local_flow(A, root / "outbox"), SERVER).start()
    password = daemon.cli_json("accounts", "create", A)["password"]
    yield {"daemon": daemon, "password": password, "root": root}
    daemon.stop()


def _events(daemon: Daemon, name: str) -> list[dict]:
    text = daemon.log.read_text()
    complete = text[: text.rfind("\n") + 1]  # a process may be writing the last line right now
    lines = [json.loads(line) for line in complete.splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("event") == name]


def _server_pids(daemon: Daemon) -> set[int]:
    started = {e["sftp_pid"] for e in _events(daemon, "sftp_process_started")}
    gone = {e["sftp_pid"] for e in _events(daemon, "sftp_process_lost") + _events(daemon, "sftp_process_stopped")}
    return started - gone


def _login(world, user: str = A, password: str | None = None, source: str | None = None) -> paramiko.SSHClient:
    return paramiko_client(world["daemon"], user, password=password or world["password"], source=source)


def _local_port(client: paramiko.SSHClient) -> str:
    return f"127.0.0.1:{client.get_transport().sock.getsockname()[1]}"  # type: ignore[union-attr]


def _upload_from_many_clients(world, tag: str) -> None:
    zipped = roster_zip(world["root"], f"roster-{tag}.zip")
    daemon = world["daemon"]
    before = len(daemon.runs(A))
    for i in range(TRIES):
        client = _login(world)
        try:
            client.open_sftp().put(str(zipped), f"{tag}-{i}.zip")
        finally:
            client.close()
    runs = daemon.wait_for_runs(before + TRIES, account=A, timeout=60)
    assert len(runs) == before + TRIES
    assert {r["status"] for r in runs} <= {"delivered", "superseded"}  # a queued upload gives way to a newer one


def test_two_processes_serve_and_every_upload_lands_in_the_one_intake(world):
    daemon = world["daemon"]
    assert wait_until(lambda: len(_server_pids(daemon)) == 2, timeout=20)
    pids = _server_pids(daemon)
    assert daemon.process is not None and daemon.process.pid not in pids
    _upload_from_many_clients(world, "first")
    served = {e["sftp_pid"] for e in _events(daemon, "login")}
    assert served == pids  # both processes took logins; the daemon itself serves no SFTP


def test_the_session_limit_of_an_account_holds_across_processes(world):
    daemon = world["daemon"]
    held = _login(world)
    try:
        held.open_sftp().listdir("/")
        refused_remotes = []
        for _ in range(TRIES):
            other = _login(world)
            try:
                with pytest.raises(IOError, match="too many sessions"):
                    other.open_sftp().listdir("/")
                refused_remotes.append(_local_port(other))
            finally:
                other.close()
        held_pid = next(e["sftp_pid"] for e in _events(daemon, "login") if e["remote"] == _local_port(held))
    finally:
        held.close()
    assert wait_until(lambda: len([e for e in _events(daemon, "session_refused")
                                   if e["remote"] in refused_remotes]) == TRIES, timeout=5)
    refusers = {e["sftp_pid"] for e in _events(daemon, "session_refused") if e["remote"] in refused_remotes}
    assert refusers - {held_pid}, "no refusal came from the other process"
    # the slot is given back when the session ends: a new session is accepted again
    assert wait_until(lambda: _session_works(world), timeout=10)


def _session_works(world) -> bool:
    client = _login(world)
    try:
        client.open_sftp().listdir("/")
        return True
    except OSError:
        return False
    finally:
        client.close()


def _attempt(world, source: str) -> str:
    try:
        client = paramiko_client(world["daemon"], A, password=world["password"], source=source)
    except paramiko.AuthenticationException:
        return "auth-failed"
    except (paramiko.SSHException, OSError, EOFError):
        return "refused"
    client.close()
    return "ok"


def test_a_ban_made_in_one_process_holds_in_the_other_and_survives_a_restart(world):
    daemon = world["daemon"]
    for _ in range(2):  # 2 x 2 points: the threshold
        with pytest.raises(paramiko.AuthenticationException):
            paramiko_client(daemon, "nobody", password=WRONG, source="127.0.0.2")
    assert wait_until(lambda: _events(daemon, "source_banned"), timeout=5)
    banner = _events(daemon, "source_banned")[0]["sftp_pid"]
    assert [_attempt(world, "127.0.0.2") for _ in range(TRIES)] == ["refused"] * TRIES
    assert _attempt(world, "127.0.0.1") == "ok"
    refusers = {e["sftp_pid"] for e in _events(daemon, "connection_refused") if e["remote"].startswith("127.0.0.2:")}
    assert refusers - {banner}, "the other process did not refuse the banned source"
    daemon.stop()
    assert daemon.process is not None and daemon.process.returncode == 0
    daemon.start()
    assert wait_until(lambda: len(_server_pids(daemon)) == 2, timeout=20)
    assert _attempt(world, "127.0.0.2") == "refused"  # the ban is in the store, not in a process's memory
    assert _attempt(world, "127.0.0.1") == "ok"
    assert WRONG not in daemon.log.read_text()


def test_a_killed_server_process_is_replaced_and_the_daemon_keeps_serving(world):
    daemon = world["daemon"]
    assert wait_until(lambda: len(_server_pids(daemon)) == 2, timeout=20)
    victim = sorted(_server_pids(daemon))[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: any(e["sftp_pid"] == victim for e in _events(daemon, "sftp_process_lost")), timeout=10)
    assert wait_until(lambda: len(_server_pids(daemon)) == 2 and victim not in _server_pids(daemon), timeout=30)
    _upload_from_many_clients(world, "after-kill")
    recent = _events(daemon, "login")[-TRIES:]
    assert {e["sftp_pid"] for e in recent} == _server_pids(daemon)


def test_a_reload_replaces_the_server_processes_with_the_new_limits(world):
    daemon = world["daemon"]
    old = _server_pids(daemon)
    assert len(old) == 2
    daemon.config.write_text(daemon.config.read_text().replace("max_sessions_per_account = 1",
                                                               "max_sessions_per_account = 2"))
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: _events(daemon, "reloaded"), timeout=20)
    assert wait_until(lambda: len(_server_pids(daemon)) == 2 and not (_server_pids(daemon) & old), timeout=20)
    first, second = _login(world), _login(world)
    try:
        first.open_sftp().listdir("/")
        second.open_sftp().listdir("/")  # two sessions now, in whichever processes
    finally:
        first.close()
        second.close()


def test_a_stop_waits_for_an_upload_in_flight_in_a_server_process(world):
    daemon = world["daemon"]
    data = roster_zip(world["root"], "drain.zip").read_bytes()
    client = _login(world)
    try:
        handle = client.open_sftp().open("drain.zip", "w")
        handle.write(data[: len(data) // 2])
        handle.flush()
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
        assert wait_until(lambda: _events(daemon, "daemon_stopping"), timeout=10)
        time.sleep(0.5)
        handle.write(data[len(data) // 2:])
        handle.close()
    finally:
        client.close()
    daemon.process.wait(timeout=20)
    assert daemon.process.returncode == 0
    assert _events(daemon, "daemon_stopped")[-1]["uploads_cut_short"] == 0
    daemon.start()
    runs = [r for r in daemon.wait_for_runs(1, account=A, timeout=30) if r.get("upload_name") == "drain.zip"]
    assert len(runs) == 1


def test_the_server_processes_end_with_the_daemon(world):
    daemon = world["daemon"]
    pids = _server_pids(daemon)
    assert len(pids) == 2
    daemon.stop()
    assert daemon.process is not None and daemon.process.returncode == 0
    assert wait_until(lambda: not any(_alive(p) for p in pids), timeout=10)
    stopped = _events(daemon, "daemon_stopped")
    assert stopped and stopped[-1]["uploads_cut_short"] == 0
    daemon.start()  # for a later test in the module, and to show the port is free again
    time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_taken_port_stops_the_start_with_one_clear_problem(tmp_path):
    daemon = Daemon(tmp_path, "", "sftp_processes = 2")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", daemon.port))
        taken.listen()
        result = subprocess.run([sys.executable, "-m", "rostergate", "--config", str(daemon.config), "serve"],
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    refused = [json.loads(line) for line in result.stderr.splitlines() if '"serve_refused"' in line]
    assert refused and f"cannot listen on 127.0.0.1:{daemon.port}" in refused[0]["problems"][0]
    assert any('"sftp_process_cannot_listen"' in line for line in result.stderr.splitlines())
    assert not (daemon.data_dir / "run" / "sftp.sock").exists()


# -- a second daemon: connections per source, metrics, a killed process's staged uploads ------------
METERED = """
sftp_processes = 2
metrics_listen = "127.0.0.1:{port}"
[server.defender]
max_connections_per_source = 2
threshold = 1000
"""


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftp-processes-metered")
    port = free_port()
    daemon = Daemon(root, local_flow(A, root / "outbox"), METERED.format(port=port)).start()
    password = daemon.cli_json("accounts", "create", A)["password"]
    assert wait_until(lambda: len(_server_pids(daemon)) == 2, timeout=30)
    yield {"daemon": daemon, "password": password, "root": root, "metrics": f"http://127.0.0.1:{port}/metrics"}
    daemon.stop()


def _open_connections(daemon: Daemon) -> int:
    """Connections the server processes count now (max_connections_per_source), from the store."""
    with sqlite3.connect(f"file:{daemon.data_dir / 'rostergate.db'}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute("SELECT COUNT(*) FROM sftp_connections").fetchone()[0]


def _metered_login(world) -> paramiko.SSHClient:
    """A login once the connections closed before are given back (limit 2: a client that closes and
    connects again at once could find its last connection still counted)."""
    assert wait_until(lambda: _open_connections(world["daemon"]) == 0, timeout=10)
    return paramiko_client(world["daemon"], A, password=world["password"])


def _connect(world) -> paramiko.SSHClient | str:
    """A logged-in client, or "refused" when the server closed the connection."""
    try:
        return paramiko_client(world["daemon"], A, password=world["password"])
    except (paramiko.SSHException, OSError, EOFError):
        return "refused"


def test_connections_per_source_are_counted_across_processes(metered):
    daemon = metered["daemon"]
    held = [_connect(metered), _connect(metered)]
    try:
        assert all(isinstance(c, paramiko.SSHClient) for c in held)
        third = [_connect(metered) for _ in range(TRIES)]  # limit 2: the third, whichever process takes it
        assert third == ["refused"] * TRIES
    finally:
        for client in held:
            if isinstance(client, paramiko.SSHClient):
                client.close()
    refusers = {e["sftp_pid"] for e in _events(daemon, "connection_refused")}
    assert refusers == _server_pids(daemon)  # both processes refused: neither counted only its own
    assert all("too many connections" in e["reason"] for e in _events(daemon, "connection_refused"))

    def a_third_fits() -> bool:  # the counts are given back as the held connections end
        clients = [_connect(metered) for _ in range(2)]
        for client in clients:
            if isinstance(client, paramiko.SSHClient):
                client.close()
        return all(isinstance(c, paramiko.SSHClient) for c in clients)

    assert wait_until(a_third_fits, timeout=10, interval=0.3)
    assert wait_until(lambda: _open_connections(daemon) == 0, timeout=10)  # every count given back


def _scrape(world) -> dict[str, float]:
    text = urllib.request.urlopen(world["metrics"], timeout=10).read().decode()
    return {m[0]: float(m[1]) for m in re.findall(r"^(rostergate_sftp_\S+) (\S+)$", text, re.MULTILINE)}


def test_the_server_processes_counts_are_served_by_the_daemon(metered):
    daemon = metered["daemon"]
    zipped = roster_zip(metered["root"], "metered.zip")
    size = zipped.stat().st_size
    before = _scrape(metered)
    for i in range(TRIES):  # both processes serve some of them
        client = _metered_login(metered)
        try:
            client.open_sftp().put(str(zipped), f"metered-{i}.zip")
        finally:
            client.close()
    assert wait_until(lambda: _open_connections(daemon) == 0, timeout=10)
    with pytest.raises(paramiko.AuthenticationException):
        paramiko_client(daemon, A, password=WRONG)
    served = {e["sftp_pid"] for e in _events(daemon, "login")[-TRIES:]}
    assert served == _server_pids(daemon)
    logins, bytes_in = "rostergate_sftp_logins_total", 'rostergate_sftp_bytes_total{direction="in"}'
    failures = 'rostergate_sftp_login_failures_total{method="password"}'

    def counted() -> bool:
        now = _scrape(metered)
        return (now.get(logins, 0) - before.get(logins, 0) >= TRIES
                and now.get(bytes_in, 0) - before.get(bytes_in, 0) >= TRIES * size
                and now.get(failures, 0) - before.get(failures, 0) >= 1)

    assert wait_until(counted, timeout=10), _scrape(metered)
    daemon.wait_for_runs(TRIES, account=A, timeout=60)
    # a server process that dies leaves what it counted in the totals (counters never go back)
    counts = _scrape(metered)
    victim = sorted(_server_pids(daemon))[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: len(_server_pids(daemon)) == 2 and victim not in _server_pids(daemon), timeout=30)
    after = _scrape(metered)
    assert all(after.get(name, 0) >= value for name, value in counts.items() if name.endswith("_total"))


def _stage_as(daemon: Daemon, pid: int, source: os.PathLike, name: str) -> Path:
    """An upload staged by server process ``pid`` as it stages one (rostergate.sftp.files.ServerState.stage)."""
    token = daemon.data_dir / "incoming" / A / f"{pid}-{os.urandom(8).hex()}"
    token.mkdir(mode=0o700, parents=True)
    (token / ".origin").write_text(f"/{name}")
    staged = token / name
    staged.write_bytes(Path(source).read_bytes())
    staged.chmod(0o600)
    return token


def _runs_named(daemon: Daemon, name: str) -> list[dict]:
    return [r for r in daemon.runs(A) if r["upload_name"] == name]


def test_a_killed_process_s_staged_upload_is_recovered_without_a_restart(metered):
    daemon = metered["daemon"]
    victim, survivor = sorted(_server_pids(daemon))
    zipped = roster_zip(metered["root"], "staged.zip")
    left = _stage_as(daemon, victim, zipped, "left-by-the-dead.zip")
    other = _stage_as(daemon, survivor, zipped, "still-in-hand.zip")  # the living process's: not the daemon's
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: any(e["sftp_pid"] == victim for e in _events(daemon, "sftp_process_uploads_recovered")),
                      timeout=20)
    assert wait_until(lambda: [r["status"] for r in _runs_named(daemon, "left-by-the-dead.zip")] == ["delivered"],
                      timeout=30, interval=0.3)
    assert not left.exists()
    assert other.exists() and not _runs_named(daemon, "still-in-hand.zip")
    for path in other.iterdir():  # under the test's own tmp_path
        path.unlink()
    other.rmdir()


def _staged_tokens(daemon: Daemon) -> list[Path]:
    folder = daemon.data_dir / "incoming" / A
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def test_an_upload_handed_over_as_its_process_dies_becomes_one_run(metered):
    """The daemon is stopped (SIGSTOP) while a server process stages an upload and hands it over;
    the process is killed before any answer. Whether its hand-over reached the socket or not, the
    upload becomes exactly one run once the daemon runs again."""
    daemon = metered["daemon"]
    assert daemon.process is not None
    zipped = roster_zip(metered["root"], "race.zip")
    assert wait_until(lambda: _open_connections(daemon) == 0, timeout=10)
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        client = paramiko_client(daemon, A, password=metered["password"])
        try:
            client.open_sftp().put(str(zipped), "race.zip")  # answered by the server process alone
        finally:
            client.close()
        assert wait_until(lambda: len(_staged_tokens(daemon)) == 1, timeout=10)
        token = _staged_tokens(daemon)[0]
        stager = int(token.name.split("-")[0])
        assert stager in _server_pids(daemon)
        time.sleep(0.2)  # its hand-over, if it goes out, is in the socket now
        os.kill(stager, signal.SIGKILL)
    finally:
        daemon.process.send_signal(signal.SIGCONT)
    assert wait_until(lambda: [r["status"] for r in _runs_named(daemon, "race.zip")] == ["delivered"],
                      timeout=30, interval=0.3)
    assert wait_until(lambda: not token.exists(), timeout=10)
    time.sleep(1.0)  # nothing hands it over a second time
    assert len(_runs_named(daemon, "race.zip")) == 1
