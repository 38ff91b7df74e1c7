"""Forwarding with paramiko to real SFTP servers on loopback (OpenSSH sshd, asyncssh)."""

import dataclasses
import subprocess

import pytest

from rostergate.config import Downstream
from rostergate.errors import FinalError, RetryableError
from rostergate.forward import forwarder_for
from tests.conftest import free_port, require_tool
from tests.downstream import AsyncsshDownstream, OpenSSHDownstream


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
    receipt = forwarder_for(key_downstream(sshd)).deliver(payload, "district-a-1.zip")
    delivered = sshd.dropbox / "district-a-1.zip"
    assert delivered.read_bytes() == payload.read_bytes()
    assert receipt.remote.endswith("/district-a-1.zip")


def test_host_key_mismatch_is_final_and_writes_nothing(sshd, payload, tmp_path):
    other = OpenSSHDownstream(tmp_path / "other")  # only for a second, different host key
    with pytest.raises(FinalError, match="host key mismatch"):
        forwarder_for(key_downstream(sshd, host_key=other.host_key_line)).deliver(payload, "x.zip")
    assert list(sshd.dropbox.iterdir()) == []


def test_refused_login_is_final(sshd, payload, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(FinalError, match="refused the login"):
        forwarder_for(key_downstream(sshd, key_file=stranger)).deliver(payload, "x.zip")


def test_unreachable_server_is_retryable(payload, tmp_path):
    unused = OpenSSHDownstream(tmp_path / "unused")  # a real key to pin; no server is started
    down = Downstream(url="sftp://x", scheme="sftp", host="127.0.0.1", port=free_port(), username="u",
                      path="/", host_key=unused.host_key_line, connect_timeout=2)
    with pytest.raises(RetryableError, match="cannot reach"):
        forwarder_for(down).deliver(payload, "x.zip")


def test_missing_remote_folder_is_final(sshd, payload):
    with pytest.raises(FinalError, match="does not exist"):
        forwarder_for(key_downstream(sshd, path=str(sshd.dropbox / "nope"))).deliver(payload, "x.zip")


def test_password_login_to_asyncssh_server(tmp_path, payload):
    server = AsyncsshDownstream(tmp_path / "async").start()
    try:
        down = Downstream(url="sftp://x", scheme="sftp", host="127.0.0.1", port=server.port,
                          username=server.username, path="/dropbox", password_file=server.password_file,
                          host_key=server.host_key_line, connect_timeout=5)
        forwarder_for(down).deliver(payload, "a.zip")
        assert (server.dropbox / "a.zip").read_bytes() == payload.read_bytes()
    finally:
        server.stop()


# -- every step inside the one boundary: secrets reads and client set-up too ---------------
def test_a_password_file_that_is_not_text_is_final_and_not_quoted(tmp_path, payload):
    secret = tmp_path / "downstream.pass"
    secret.write_bytes(b"s3cr\xff\xfet")
    down = Downstream(url="sftp://x", scheme="sftp", host="127.0.0.1", port=free_port(), username="u", path="/",
                      password_file=secret, host_key=OpenSSHDownstream(tmp_path / "k").host_key_line)
    with pytest.raises(FinalError, match="password_file .* is not UTF-8 text") as caught:
        forwarder_for(down).deliver(payload, "a.zip")
    assert "s3cr" not in str(caught.value) and "xff" not in str(caught.value)
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


def test_a_password_file_removed_after_start_is_a_clear_retryable_error(tmp_path, payload):
    down = Downstream(url="sftp://x", scheme="sftp", host="127.0.0.1", port=free_port(), username="u", path="/",
                      password_file=tmp_path / "gone.pass", host_key=OpenSSHDownstream(tmp_path / "k").host_key_line)
    with pytest.raises(RetryableError, match="cannot read flows.downstream.password_file .*No such file"):
        forwarder_for(down).deliver(payload, "a.zip")


def test_a_pinned_host_key_that_is_no_key_fails_the_set_up_as_final(payload):
    down = Downstream(url="sftp://x", scheme="sftp", host="127.0.0.1", port=free_port(), username="u", path="/",
                      host_key="ssh-ed25519 not-base64!")
    with pytest.raises(FinalError, match="credentials cannot be used: not a usable OpenSSH public key"):
        forwarder_for(down).deliver(payload, "a.zip")


def test_an_unreadable_known_hosts_file_is_retryable(tmp_path, payload):
    down = Downstream(url="sftp://x", scheme="sftp", host="127.0.0.1", port=free_port(), username="u", path="/",
                      known_hosts=tmp_path / "gone")
    with pytest.raises(RetryableError, match="cannot read flows.downstream.known_hosts .*gone: No such file"):
        forwarder_for(down).deliver(payload, "a.zip")


def test_written_path_is_where_an_attempt_writes(sshd):
    for temp_name, name in ((True, ".a.zip.partial"), (False, "a.zip")):
        assert forwarder_for(key_downstream(sshd, temp_name=temp_name)).written_path("a.zip") == f"{sshd.dropbox}/{name}"
