"""Brute-force defence against the running daemon, from several loopback source addresses.

Linux routes all of 127.0.0.0/8 to the loopback interface, so a client socket
bound to 127.0.0.2 is "another source" for the server.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time

import paramiko
import pytest

from tests.conftest import Daemon, can_bind, local_flow, make_keypair, require_tool
from tests.sftp.helpers import SSH_OPTS, paramiko_client

A = "district-a"
DEFENDER = """
[server.defender]
threshold = 10
score_known_user = 1
score_unknown_user = 2
score_limit_exceeded = 3
observation_seconds = 60
ban_seconds = 3
ban_increment_percent = 50
account_threshold = 1000
failed_password_delay_seconds = 0.2
max_auth_attempts = 6
"""
WRONG = "Wrong-Password-Never-Logged-7"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if not all(can_bind(a) for a in ("127.0.0.2", "127.0.0.3", "127.0.0.4")):
        pytest.skip("cannot bind 127.0.0.2-4 as client source addresses here")
    root = tmp_path_factory.mktemp("sftp-defender")
    daemon = Daemon(root, local_flow(A, root / "outbox"), DEFENDER).start()
    password = daemon.cli_json("accounts", "create", A)["password"]
    yield {"daemon": daemon, "password": password}
    daemon.stop()


def _attempt(world, user: str, password: str, source: str) -> str:
    """One login; returns 'ok', 'auth-failed' or 'refused' (connection dropped before auth)."""
    try:
        client = paramiko_client(world["daemon"], user, password=password, source=source)
    except paramiko.AuthenticationException:
        return "auth-failed"
    except (paramiko.SSHException, OSError, EOFError):
        return "refused"
    client.close()
    return "ok"


def test_burst_of_bad_passwords_bans_the_source_not_others_and_expires(world):
    results = [_attempt(world, "nobody", WRONG, "127.0.0.2") for _ in range(5)]  # 5 x 2 points = 10
    assert results == ["auth-failed"] * 5
    banned_at = time.monotonic()
    assert _attempt(world, A, world["password"], "127.0.0.2") == "refused"
    assert _attempt(world, A, world["password"], "127.0.0.1") == "ok"  # another source is not affected
    time.sleep(max(0.0, banned_at + 3.3 - time.monotonic()))
    assert _attempt(world, A, world["password"], "127.0.0.2") == "ok"
    events = _events(world)
    bans = [e for e in events if e["event"] == "source_banned"]
    assert bans and bans[0]["remote"] == "127.0.0.2"
    assert WRONG not in world["daemon"].log.read_text()
    failed = [e for e in events if e["event"] == "login_failed"]
    assert failed and {"account", "remote", "method"} <= set(failed[0])


def test_at_most_six_attempts_per_connection(world, tmp_path):
    """OpenSSH offering eight unknown keys is cut off after six, as sshd's MaxAuthTries does."""
    require_tool("ssh")
    keys = [make_keypair(tmp_path, f"k{i}") for i in range(8)]
    args = ["ssh", "-p", str(world["daemon"].port), "-b", "127.0.0.3", *SSH_OPTS, "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey", "-o", "LogLevel=INFO"]
    for key in keys:
        args += ["-i", str(key)]
    result = subprocess.run([*args, f"{A}@127.0.0.1", "true"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "too many authentication failures" in result.stderr.lower()
    failed = [e for e in _events(world) if e["event"] == "login_failed" and e["remote"].startswith("127.0.0.3:")]
    assert len(failed) == 6
    assert any(e["event"] == "login_attempts_exhausted" for e in _events(world))


def test_known_and_unknown_users_fail_alike(world):
    def timed(user: str) -> tuple[str, float]:
        start = time.monotonic()
        outcome = _attempt(world, user, WRONG, "127.0.0.4")
        return outcome, time.monotonic() - start

    known = [timed(A) for _ in range(3)]
    unknown = [timed("no-such-district") for _ in range(3)]
    assert {o for o, _ in known} == {o for o, _ in unknown} == {"auth-failed"}
    assert all(t >= 0.2 for _, t in known + unknown)  # the failed-password delay
    gap = abs(statistics.median(t for _, t in known) - statistics.median(t for _, t in unknown))
    assert gap < 0.25, (known, unknown)


def _events(world) -> list[dict]:
    return [json.loads(line) for line in world["daemon"].log.read_text().splitlines() if line.startswith("{")]
