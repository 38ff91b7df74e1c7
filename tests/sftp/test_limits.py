"""Limits: upload size, sessions per account, open handles, packet size, idle and login time.

Each refusal says why in the SFTP status message.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import asyncssh
import pytest

from tests.conftest import Daemon, local_flow
from tests.sftp.helpers import count_runs_fast, padded_zip, paramiko_client, wait_until

A, B = "district-a", "district-b"
LIMITS = """
[server.limits]
max_upload_bytes = 200000
max_sessions_per_account = 1
idle_timeout_seconds = 2
login_grace_seconds = 2
max_open_handles = 3
max_packet_bytes = 65536
[server.limits.accounts."district-b"]
max_sessions = 3
max_upload_bytes = 400000
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftp-limits")
    daemon = Daemon(root, local_flow(A, root / "outbox-a") + local_flow(B, root / "outbox-b"), LIMITS).start()
    passwords = {name: daemon.cli_json("accounts", "create", name)["password"] for name in (A, B)}
    yield {"daemon": daemon, "passwords": passwords, "root": root}
    daemon.stop()


def client(world, account=A):
    return paramiko_client(world["daemon"], account, password=world["passwords"][account])


def test_upload_over_the_size_limit_is_refused_with_the_reason(world):
    big = padded_zip(world["root"], "big.zip", 300_000)
    ssh = client(world)
    try:
        sftp = ssh.open_sftp()
        with pytest.raises(IOError, match="limit of 200000 bytes"):
            with sftp.open("big.zip", "w") as handle:  # not pipelined: each write's status is checked
                handle.write(big.read_bytes())
    finally:
        ssh.close()
    time.sleep(0.5)
    assert count_runs_fast(world["daemon"], A, "big.zip") == 0


def test_per_account_override_allows_a_bigger_upload(world):
    upload = padded_zip(world["root"], "bigger.zip", 300_000)
    ssh = client(world, B)
    try:
        ssh.open_sftp().put(str(upload), "bigger.zip")
    finally:
        ssh.close()
    assert wait_until(lambda: count_runs_fast(world["daemon"], B, "bigger.zip") == 1, timeout=15)


def test_second_session_of_an_account_is_refused_with_the_reason(world):
    first = client(world)
    second = client(world)
    try:
        first.open_sftp().listdir("/")
        with pytest.raises(IOError, match="too many sessions"):
            second.open_sftp().listdir("/")
    finally:
        first.close()
        second.close()
    third = client(world)  # the slot is free again once the first session ends
    try:
        assert wait_until(lambda: _lists(third), timeout=5)
    finally:
        third.close()


def _lists(ssh) -> bool:
    try:
        ssh.open_sftp().listdir("/")
        return True
    except OSError:
        return False


def test_open_handles_are_capped_per_session(world):
    ssh = client(world)
    try:
        sftp = ssh.open_sftp()
        handles = [sftp.open(f"h{i}.txt", "w") for i in range(3)]
        with pytest.raises(IOError, match="too many open files"):
            sftp.open("h3.txt", "w")
        handles[0].close()
        sftp.open("h3.txt", "w").close()
    finally:
        ssh.close()


def test_limits_extension_advertises_the_packet_cap(world):
    async def limits():
        async with asyncssh.connect("127.0.0.1", world["daemon"].port, username=A, password=world["passwords"][A],
                                    known_hosts=None, client_keys=None, connect_timeout=10) as conn:
            async with conn.start_sftp_client() as sftp:
                return sftp._handler.limits  # noqa: SLF001 - what the server advertised

    result = asyncio.run(asyncio.wait_for(limits(), 30))
    assert result.max_write_len == 64512 and result.max_read_len == 64512


def test_oversized_inbound_packet_is_refused_and_ends_the_session(world):
    ssh = client(world)
    try:
        channel = ssh.get_transport().open_session(timeout=10)
        channel.settimeout(10)
        channel.invoke_subsystem("sftp")
        channel.sendall(struct.pack(">IBI", 5, 1, 3))  # SSH_FXP_INIT v3
        length = struct.unpack(">I", _recv_exact(channel, 4))[0]
        _recv_exact(channel, length)  # SSH_FXP_VERSION
        channel.sendall(struct.pack(">IBI", 1_000_000, 6, 42))  # a 1 MB "write", body never sent
        length = struct.unpack(">I", _recv_exact(channel, 4))[0]
        reply = _recv_exact(channel, length)
        kind, request, code = struct.unpack(">BII", reply[:9])
        assert (kind, request, code) == (101, 42, 5)  # SSH_FXP_STATUS, our id, SSH_FX_BAD_MESSAGE
        assert b"at most 65536 bytes" in reply
        assert wait_until(lambda: channel.exit_status_ready() or channel.closed or channel.recv(1) == b"", 5)
    finally:
        ssh.close()


def _recv_exact(channel, size: int) -> bytes:
    data = b""
    for _ in range(1000):
        if len(data) >= size:
            break
        chunk = channel.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    assert len(data) == size
    return data


def test_idle_connection_is_closed(world):
    ssh = client(world)
    try:
        ssh.open_sftp().listdir("/")
        transport = ssh.get_transport()
        assert wait_until(lambda: not transport.is_active(), timeout=8)
    finally:
        ssh.close()


def test_login_grace_time(world):
    with socket.create_connection(("127.0.0.1", world["daemon"].port), timeout=10) as sock:
        sock.settimeout(8)
        assert sock.recv(100).startswith(b"SSH-2.0-")
        start = time.monotonic()
        data = b"x"
        for _ in range(100):  # read until the server closes (bounded)
            data = sock.recv(4096)
            if not data:
                break
        assert data == b"" and time.monotonic() - start < 6


def test_openssh_sftp_shows_the_reason_of_a_refusal(world, tmp_path):
    """OpenSSH ``sftp`` prints only "Failure" for a failed write; the reason also goes to stderr."""
    from tests.conftest import make_keypair, require_tool
    from tests.sftp.helpers import sftp_batch

    require_tool("sftp")
    key = make_keypair(tmp_path)
    world["daemon"].cli("accounts", "set-key", A, f"{key}.pub")
    big = padded_zip(world["root"], "big-openssh.zip", 300_000)
    result = sftp_batch(world["daemon"], A, f"put {big}\n", key=key)
    assert result.returncode != 0
    assert "limit of 200000 bytes" in result.stderr
