"""Forwarding with paramiko to real SFTP servers on loopback (OpenSSH sshd, asyncssh)."""

import dataclasses
import zipfile

import pytest

from rostergate.forward import sftp as forward
from rostergate.config import Downstream
from tests.conftest import free_port, require_tool
from tests.downstream import AsyncsshDownstream, OpenSSHDownstream


@pytest.fixture
def payload(tmp_path):
    path = tmp_path / "out.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("students.csv", "person_id\n1\n")
    return path


@pytest.fixture
def sshd(tmp_path):
    require_tool("sshd")
    server = OpenSSHDownstream(tmp_path / "sshd").start()
    yield server
    server.stop()


def key_downstream(server: OpenSSHDownstream, **changes) -> Downstream:
    base = Downstream(
        url="sftp://x", scheme="sftp", host="127.0.0.1", port=server.port, username=server.user,
        path=str(server.dropbox), key_file=server.client_key, host_key=server.host_key_line, connect_timeout=5,
    )
    return dataclasses.replace(base, **changes)


def test_delivers_to_openssh_with_key_and_pinned_host_key(sshd, payload):
    where = forward.deliver(payload, key_downstream(sshd), "district-a-1.zip")
    delivered = sshd.dropbox / "district-a-1.zip"
    assert delivered.read_bytes() == payload.read_bytes()
    assert where.endswith("/district-a-1.zip")


def test_host_key_mismatch_is_final_and_writes_nothing(sshd, payload, tmp_path):
    other = OpenSSHDownstream(tmp_path / "other")  # only for a second, different host key
    with pytest.raises(forward.FinalError, match="host key mismatch"):
        forward.deliver(payload, key_downstream(sshd, host_key=other.host_key_line), "x.zip")
    assert list(sshd.dropbox.iterdir()) == []


def test_refused_login_is_final(sshd, payload, tmp_path):
    stranger = tmp_path / "stranger"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(forward.FinalError, match="refused the login"):
        forward.deliver(payload, key_downstream(sshd, key_file=stranger), "x.zip")


def test_unreachable_server_is_retryable(payload, tmp_path):
    unused = OpenSSHDownstream(tmp_path / "unused")  # a real key to pin; no server is started
    down = Downstream(url="sftp://x", scheme="sftp", host="127.0.0.1", port=free_port(), username="u",
                      path="/", host_key=unused.host_key_line, connect_timeout=2)
    with pytest.raises(forward.RetryableError, match="cannot reach"):
        forward.deliver(payload, down, "x.zip")


def test_missing_remote_folder_is_final(sshd, payload):
    with pytest.raises(forward.FinalError, match="does not exist"):
        forward.deliver(payload, key_downstream(sshd, path=str(sshd.dropbox / "nope")), "x.zip")


def test_password_login_to_asyncssh_server(tmp_path, payload):
    server = AsyncsshDownstream(tmp_path / "async").start()
    try:
        down = Downstream(url="sftp://x", scheme="sftp", host="127.0.0.1", port=server.port,
                          username=server.username, path="/dropbox", password_file=server.password_file,
                          host_key=server.host_key_line, connect_timeout=5)
        forward.deliver(payload, down, "a.zip")
        assert (server.dropbox / "a.zip").read_bytes() == payload.read_bytes()
    finally:
        server.stop()


def test_local_folder_delivery_is_owner_only(tmp_path, payload):
    outbox = tmp_path / "outbox"
    down = Downstream(url=outbox.as_uri(), scheme="file", path=str(outbox))
    forward.deliver(payload, down, "a.zip")
    assert (outbox / "a.zip").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in outbox.iterdir()] == ["a.zip"]
