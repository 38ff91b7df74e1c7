"""Forwarding with paramiko to real SFTP servers on loopback (OpenSSH sshd, asyncssh).

Delivered means verified: :meth:`SftpForwarder.deliver` returns a receipt only when
every WRITE and the CLOSE were answered OK, the bytes sent are the checked ones and
the size on the server is the size sent (as the downstream's ``verify`` says). The
faulty downstreams are :class:`tests.downstream.AsyncsshDownstream` with
:class:`tests.downstream.Faults` switched on.
"""

import dataclasses
import os
import socket
import subprocess
from pathlib import Path

import paramiko
import pytest
from structlog.testing import capture_logs

from rostergate.config import Downstream
from rostergate.errors import FinalError, RetryableError
from rostergate.forward import forwarder_for, login
from rostergate.forward import sftp as sftp_forwarder
from tests.conftest import OpenSSHDownstream, free_port, make_keypair, public_key_line
from tests.downstream import AsyncsshDownstream

APPLE = {"temp_name": False, "verify": "size-on-handle"}  # what config gives upload.appleschoolcontent.com


def key_downstream(server: OpenSSHDownstream, **changes) -> Downstream:
    base = Downstream(
        url="sftp://x", scheme="sftp", host="127.0.0.1", port=server.port, username=server.user,
        path=str(server.dropbox), key_file=server.client_key, host_key=server.host_key_line, connect_timeout=5,
    )
    return dataclasses.replace(base, **changes)


def password_downstream(server: AsyncsshDownstream, **changes) -> Downstream:
    base = Downstream(url=f"sftp://{server.username}@127.0.0.1:{server.port}/dropbox", scheme="sftp",
                      host="127.0.0.1", port=server.port, username=server.username, path="/dropbox",
                      password_file=server.password_file, host_key=server.host_key_line, connect_timeout=5)
    return dataclasses.replace(base, **changes)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- delivered, with a receipt ---------------------------------------------------------
def test_delivers_to_openssh_with_key_and_pinned_host_key(sshd, payload, sha256):
    down = key_downstream(sshd)
    receipt = forwarder_for(down).deliver(payload, "district-a-1.zip", expected_sha256=sha256(payload))
    delivered = sshd.dropbox / "district-a-1.zip"
    assert delivered.read_bytes() == payload.read_bytes()
    assert names(sshd.dropbox) == ["district-a-1.zip"]  # the .partial was renamed into place
    assert receipt.destination == down.url
    assert receipt.remote == str(delivered)
    assert (receipt.size, receipt.sha256) == (payload.stat().st_size, sha256(payload))
    assert receipt.verified == "stat" and receipt.finished_at.endswith("Z")
    assert set(receipt.to_dict()) == {"destination", "remote", "size", "sha256", "finished_at", "verified"}


def test_host_key_mismatch_is_final_and_writes_nothing(sshd, payload, tmp_path):
    other = public_key_line(make_keypair(tmp_path, "other"))  # a second, different host key
    with pytest.raises(FinalError, match="host key mismatch"):
        forwarder_for(key_downstream(sshd, host_key=other)).deliver(payload, "x.zip")
    assert list(sshd.dropbox.iterdir()) == []


def test_refused_login_is_final(sshd, payload, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(FinalError, match="refused the login"):
        forwarder_for(key_downstream(sshd, key_file=stranger)).deliver(payload, "x.zip")


def test_unreachable_server_is_retryable(payload, tmp_path):
    unused = public_key_line(make_keypair(tmp_path, "unused"))  # a real key to pin; no server listens
    down = Downstream(url="sftp://x", scheme="sftp", host="127.0.0.1", port=free_port(), username="u",
                      path="/", host_key=unused, connect_timeout=2)
    with pytest.raises(RetryableError, match="cannot reach"):
        forwarder_for(down).deliver(payload, "x.zip")


def test_missing_remote_folder_is_final(sshd, payload):
    with pytest.raises(FinalError, match="does not exist"):
        forwarder_for(key_downstream(sshd, path=str(sshd.dropbox / "nope"))).deliver(payload, "x.zip")


def test_password_login_to_asyncssh_server_writes_partial_then_renames(faulty, big_payload, sha256):
    server = faulty()
    receipt = forwarder_for(password_downstream(server)).deliver(big_payload, "a.zip", sha256(big_payload))
    assert (server.dropbox / "a.zip").read_bytes() == big_payload.read_bytes()
    assert names(server.dropbox) == ["a.zip"]
    assert (receipt.remote, receipt.size, receipt.sha256, receipt.verified) == (
        "/dropbox/a.zip", big_payload.stat().st_size, sha256(big_payload), "stat")
    assert server.requests == [("open", "/dropbox/.a.zip.partial"), ("close", "/dropbox/.a.zip.partial"),
                               ("posix_rename", "/dropbox/a.zip"), ("stat", "/dropbox/a.zip")]


def test_aes_gcm_is_preferred_and_paramiko_s_other_ciphers_stay_in_their_order(sshd):
    client = login(key_downstream(sshd))
    try:
        transport = client.get_transport()
        assert transport is not None and transport.local_cipher == "aes128-gcm@openssh.com"
    finally:
        client.close()
    with socket.socket() as one, socket.socket() as other:  # never connected: only the options are read
        ours = sftp_forwarder._transport(one).get_security_options().ciphers
        theirs = paramiko.Transport(other).get_security_options().ciphers
    assert ours[:2] == sftp_forwarder.PREFERRED_CIPHERS and sorted(ours) == sorted(theirs)
    assert [c for c in ours if c not in sftp_forwarder.PREFERRED_CIPHERS] == [
        c for c in theirs if c not in sftp_forwarder.PREFERRED_CIPHERS]


def test_writes_are_as_large_as_the_server_s_limits_allow(faulty, tmp_path, sha256):
    """limits@openssh.com offered: WRITEs of MAX_WRITE_BYTES (asyncssh allows 4 MiB); not offered: 32 KiB."""
    payload = tmp_path / "large.zip"
    payload.write_bytes(os.urandom(3 * sftp_forwarder.MAX_WRITE_BYTES + 1000))
    for limits, size in ((True, sftp_forwarder.MAX_WRITE_BYTES), (False, 32768)):
        server = faulty(limits=limits)
        receipt = forwarder_for(password_downstream(server)).deliver(payload, "a.zip", sha256(payload))
        assert (server.dropbox / "a.zip").read_bytes() == payload.read_bytes()
        assert receipt.sha256 == sha256(payload)
        assert max(server.write_sizes) == size and sum(server.write_sizes) == payload.stat().st_size
        server.stop()


def test_login_is_the_delivery_s_own_and_classifies_alike(sshd, tmp_path):
    """``check-config --connect`` logs in through this: a client on success, our errors otherwise."""
    client = login(key_downstream(sshd))
    try:
        transport = client.get_transport()
        assert transport is not None and transport.is_authenticated()
    finally:
        client.close()
    other = public_key_line(make_keypair(tmp_path, "other"))
    with pytest.raises(FinalError, match="host key mismatch"):
        login(key_downstream(sshd, host_key=other))
    with pytest.raises(RetryableError, match=r"cannot read flows\.downstream\.key_file .*No such file"):
        login(key_downstream(sshd, key_file=tmp_path / "gone"))


# -- faulty downstreams: never delivered -----------------------------------------------
@pytest.mark.parametrize("mode", [{}, APPLE], ids=["temp-name", "apple"])
def test_write_quota_is_retryable_and_leaves_nothing_under_the_final_name(faulty, big_payload, sha256, mode):
    """paramiko's putfo(confirm=False) dropped this status: a cut file was reported delivered."""
    server = faulty(quota_bytes=100_000)
    with pytest.raises(RetryableError, match=r"refused to write .* at byte \d+ \(Disk quota exceeded\)"):
        forwarder_for(password_downstream(server, **mode)).deliver(big_payload, "a.zip", sha256(big_payload))
    assert names(server.dropbox) == []  # what was written is removed, whichever name it had


def test_error_status_on_close_is_retryable_and_the_file_is_removed(faulty, big_payload, sha256):
    server = faulty(close_error=True)
    with pytest.raises(RetryableError, match="during the close.*Input/output error"):
        forwarder_for(password_downstream(server)).deliver(big_payload, "a.zip", sha256(big_payload))
    assert names(server.dropbox) == []
    assert "posix_rename" not in server.operations()  # never renamed into place


def test_error_status_on_close_of_the_final_name_is_retryable(faulty, big_payload, sha256):
    server = faulty(close_error=True)
    with pytest.raises(RetryableError, match="during the close"):
        forwarder_for(password_downstream(server, **APPLE)).deliver(big_payload, "a.zip", sha256(big_payload))
    assert names(server.dropbox) == []


@pytest.mark.parametrize("operation", ["open", "write"])
def test_permission_denied_is_final(faulty, big_payload, sha256, operation):
    server = faulty(deny=frozenset({operation}))
    with pytest.raises(FinalError, match=rf"refused to {operation} /dropbox/\.a\.zip\.partial.*permission denied"):
        forwarder_for(password_downstream(server)).deliver(big_payload, "a.zip", sha256(big_payload))
    assert names(server.dropbox) == []


@pytest.mark.parametrize("mode", [{"verify": "stat"}, APPLE], ids=["stat", "size-on-handle"])
def test_bytes_acknowledged_but_lost_are_caught_by_the_size_check(faulty, big_payload, sha256, mode):
    server = faulty(lose_after=50_000)
    size = big_payload.stat().st_size
    with pytest.raises(RetryableError, match=f"holds 50000 of the {size} bytes sent as /dropbox/a.zip"):
        forwarder_for(password_downstream(server, **mode)).deliver(big_payload, "a.zip", sha256(big_payload))
    assert names(server.dropbox) == []  # the short file is removed, under either name


def test_bytes_acknowledged_but_lost_pass_with_verify_none(faulty, big_payload, sha256):
    """``verify = "none"`` trusts the acknowledgements: the receipt says so ("acks"); this is its limit."""
    server = faulty(lose_after=50_000)
    receipt = forwarder_for(password_downstream(server, verify="none")).deliver(big_payload, "a.zip",
                                                                                 sha256(big_payload))
    assert receipt.verified == "acks"
    assert (server.dropbox / "a.zip").stat().st_size == 50_000
    assert "stat" not in server.operations() and "fstat" not in server.operations()


def test_fstat_refused_under_size_on_handle_falls_back_to_the_acknowledgements(faulty, big_payload, sha256):
    server = faulty(refuse_fstat=True)
    with capture_logs() as logs:
        receipt = forwarder_for(password_downstream(server, **APPLE)).deliver(big_payload, "a.zip",
                                                                               sha256(big_payload))
    assert receipt.verified == "acks"
    assert (server.dropbox / "a.zip").read_bytes() == big_payload.read_bytes()
    assert any(entry["event"] == "delivery_fstat_refused" for entry in logs)


def test_apple_drop_box_that_hides_the_file_at_close(faulty, big_payload, sha256):
    """size-on-handle checks before the close and asks nothing of the name after it; stat would fail there."""
    server = faulty(hide_on_close=True)
    receipt = forwarder_for(password_downstream(server, **APPLE)).deliver(big_payload, "a.zip", sha256(big_payload))
    assert receipt.verified == "size-on-handle"
    assert (server.hidden / "a.zip").read_bytes() == big_payload.read_bytes()
    assert server.operations() == ["open", "fstat", "close"]

    with pytest.raises(RetryableError, match="lost /dropbox/b.zip during the stat"):
        forwarder_for(password_downstream(server, temp_name=False, verify="stat")).deliver(big_payload, "b.zip")


# -- names on the server -------------------------------------------------------------
@pytest.mark.parametrize("posix_rename", [True, False], ids=["posix-rename", "remove-then-rename"])
def test_replaces_an_existing_target(faulty, payload, sha256, posix_rename):
    server = faulty(posix_rename=posix_rename)
    (server.dropbox / "a.zip").write_bytes(b"an older delivery, longer than the new one" * 100)
    forwarder_for(password_downstream(server)).deliver(payload, "a.zip", sha256(payload))
    assert (server.dropbox / "a.zip").read_bytes() == payload.read_bytes()
    assert names(server.dropbox) == ["a.zip"]
    renames = [op for op in server.operations() if op in ("posix_rename", "rename", "remove")]
    assert renames == (["posix_rename"] if posix_rename else ["remove", "rename"])


def test_replaces_an_existing_target_without_temp_name_by_truncating_it(faulty, payload, sha256):
    server = faulty()
    (server.dropbox / "a.zip").write_bytes(b"x" * 10_000)
    forwarder_for(password_downstream(server, **APPLE)).deliver(payload, "a.zip", sha256(payload))
    assert (server.dropbox / "a.zip").read_bytes() == payload.read_bytes()


def test_leftovers_of_crashed_attempts_are_removed(faulty, payload, sha256):
    server = faulty()
    (server.dropbox / ".other-run.zip.partial").write_bytes(b"cut short by a crash")
    (server.dropbox / ".a.zip.partial").write_bytes(b"this run's own earlier attempt, longer" * 100)
    (server.root / "elsewhere").mkdir()
    (server.root / "elsewhere" / ".x.zip.partial").write_bytes(b"not in the drop box: never touched")
    stale = ["/dropbox/.other-run.zip.partial", "/dropbox/.a.zip.partial", "/elsewhere/.x.zip.partial"]
    forwarder_for(password_downstream(server)).deliver(payload, "a.zip", sha256(payload), stale=stale)
    assert names(server.dropbox) == ["a.zip"]
    assert (server.dropbox / "a.zip").read_bytes() == payload.read_bytes()
    assert (server.root / "elsewhere" / ".x.zip.partial").exists()


def test_written_path_is_where_an_attempt_writes(sshd):
    for temp_name, name in ((True, ".a.zip.partial"), (False, "a.zip")):
        forwarder = forwarder_for(key_downstream(sshd, temp_name=temp_name))
        assert forwarder.written_path("a.zip") == f"{sshd.dropbox}/{name}"


# -- the bytes sent are the checked ones ---------------------------------------------
def test_a_file_that_is_not_the_checked_one_is_refused_before_anything_is_written_in_place(faulty, payload):
    """Written under its final name (Apple's drop box), a changed file is refused before any request."""
    server = faulty()
    with pytest.raises(FinalError, match="not the one that was checked"):
        forwarder_for(password_downstream(server, **APPLE)).deliver(payload, "a.zip", expected_sha256="0" * 64)
    assert names(server.dropbox) == [] and server.requests == []


def test_a_changed_file_never_gets_its_final_name_with_a_temp_name(faulty, big_payload):
    """With a temp name the hash taken while sending is the check: the partial file is removed, never renamed."""
    server = faulty()
    with pytest.raises(FinalError, match="not the one that was checked"):
        forwarder_for(password_downstream(server)).deliver(big_payload, "a.zip", expected_sha256="0" * 64)
    assert names(server.dropbox) == []
    assert "rename" not in server.operations() and "posix_rename" not in server.operations()
    assert ("remove", "/dropbox/.a.zip.partial") in server.requests


def test_bytes_sent_are_hashed_and_refused_when_they_differ(faulty, big_payload, monkeypatch):
    """The hash taken while sending is the last word, even with the final name written in place."""
    monkeypatch.setattr(sftp_forwarder, "check_unchanged", lambda path, expected: None)  # changed after it
    server = faulty()
    with pytest.raises(FinalError, match="not the one that was checked"):
        forwarder_for(password_downstream(server, **APPLE)).deliver(big_payload, "a.zip", expected_sha256="0" * 64)
    assert names(server.dropbox) == []
    assert "close" in server.operations()  # it was written, then removed


# -- every step inside the one boundary: secrets reads and client set-up too ---------------
def test_missing_password_file_is_a_clear_retryable_error(faulty, payload, sha256):
    """A password file removed after start-up: named, retryable, and nothing is asked of the server."""
    server = faulty()
    down = password_downstream(server)
    server.password_file.unlink()
    with pytest.raises(RetryableError,
                       match=r"cannot read flows\.downstream\.password_file .*downstream\.pass: "
                             r"No such file or directory; restore it"):
        forwarder_for(down).deliver(payload, "a.zip", sha256(payload))
    assert server.requests == []


def test_a_password_file_that_is_not_text_is_final_and_not_quoted(tmp_path, payload):
    secret = tmp_path / "downstream.pass"
    secret.write_bytes(b"s3cr\xff\xfet")
    down = Downstream(url="sftp://x", scheme="sftp", host="127.0.0.1", port=free_port(), username="u", path="/",
                      password_file=secret, host_key=public_key_line(make_keypair(tmp_path, "k")))
    with pytest.raises(FinalError, match="password_file .* is not UTF-8 text") as caught:
        forwarder_for(down).deliver(payload, "a.zip")
    assert "s3cr" not in str(caught.value) and "xff" not in str(caught.value)
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


@pytest.mark.parametrize("damage", ["garbage", "passphrase"])
def test_unusable_key_file_is_final_and_named(sshd, payload, tmp_path, damage):
    """Not "cannot reach" (retried as if the server were down), nor a refused login."""
    key = tmp_path / "client_key"
    if damage == "garbage":
        key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n")
    else:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(key)], check=True)
    with pytest.raises(FinalError, match=rf"flows\.downstream\.key_file {key} cannot be used as a private key"):
        forwarder_for(key_downstream(sshd, key_file=key)).deliver(payload, "x.zip")
    assert names(sshd.dropbox) == []


def test_missing_key_file_is_a_clear_retryable_error(sshd, payload, tmp_path):
    with pytest.raises(RetryableError, match=r"cannot read flows\.downstream\.key_file .*No such file"):
        forwarder_for(key_downstream(sshd, key_file=tmp_path / "gone")).deliver(payload, "x.zip")


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
