"""The one error boundary of delivery: file:// and sftp:// classified alike, every error mapped ``from`` its cause."""

import errno

import paramiko
import pytest

from rostergate.config import Downstream
from rostergate.errors import DeliveryError, FinalError, RetryableError
from rostergate.forward import remote_name
from rostergate.forward.boundary import (
    CONNECT,
    OPEN,
    READ_CREDENTIALS,
    Attempt,
    WriteRefused,
    os_errors,
    paramiko_errors,
)


def folder_attempt(phase: str) -> Attempt:
    return Attempt(who="the file system", server="/srv/outbox", folder="/srv/outbox", phase=phase,
                   target="/srv/outbox/.a.zip.partial")


def sftp_attempt(phase: str) -> Attempt:
    return Attempt(who="the downstream server", server="drop.example:22", folder="/dropbox", username="apple",
                   phase=phase, target="/dropbox/.a.zip.partial")


def mapped(boundary, at: Attempt, exc: BaseException) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught, boundary(at):
        raise exc
    assert caught.value.__cause__ is exc  # raise ... from the original
    return caught.value


@pytest.mark.parametrize("code, phase, expected", [
    (errno.EACCES, "write", FinalError),
    (errno.EPERM, "rename", FinalError),
    (errno.EROFS, OPEN, FinalError),
    (errno.ENOENT, OPEN, FinalError),
    (errno.ENOENT, "rename", RetryableError),
    (errno.ENOSPC, "write", RetryableError),
    (errno.EDQUOT, "close", RetryableError),
    (errno.EIO, "write", RetryableError),
])
def test_file_and_sftp_classify_every_storage_error_alike(code, phase, expected):
    on_folder = mapped(os_errors, folder_attempt(phase), OSError(code, "as the OS says it"))
    on_sftp = mapped(paramiko_errors, sftp_attempt(phase), OSError(code, "as the server says it"))
    assert type(on_folder) is type(on_sftp) is expected


def test_messages_say_what_was_refused_and_where():
    refused = mapped(os_errors, folder_attempt("write"), OSError(errno.EACCES, "Permission denied"))
    assert str(refused) == "the file system refused to write /srv/outbox/.a.zip.partial (permission denied)"
    full = mapped(os_errors, folder_attempt("write"), OSError(errno.ENOSPC, "No space left on device"))
    assert "is full" in str(full) and "nothing was delivered" in str(full)
    missing = mapped(paramiko_errors, sftp_attempt(OPEN), FileNotFoundError(errno.ENOENT, "No such file"))
    assert str(missing) == "the downstream folder /dropbox does not exist"


def test_a_refused_sftp_write_without_errno_is_retryable_and_a_refused_permission_final():
    failure = mapped(paramiko_errors, sftp_attempt("write"), WriteRefused(98304, OSError("no space left (quota)")))
    assert isinstance(failure, RetryableError)
    assert "refused to write /dropbox/.a.zip.partial at byte 98304 (no space left (quota))" in str(failure)
    denied = mapped(paramiko_errors, sftp_attempt("write"), WriteRefused(0, PermissionError(errno.EACCES, "denied")))
    assert isinstance(denied, FinalError) and "(permission denied)" in str(denied)


@pytest.mark.parametrize("exc, expected, text", [
    (paramiko.AuthenticationException("no"), FinalError, "refused the login of 'apple'"),
    (paramiko.SSHException("Error reading SSH protocol banner"), RetryableError, "cannot reach drop.example:22"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), RetryableError, "cannot reach"),
    (TimeoutError("timed out"), RetryableError, "cannot reach"),
    (EOFError(), RetryableError, "cannot reach"),
    (PermissionError(errno.EPERM, "blocked by a firewall rule"), RetryableError, "cannot reach"),
])
def test_anything_on_the_way_to_the_server_is_retryable_but_a_refused_login(exc, expected, text):
    error = mapped(paramiko_errors, sftp_attempt(CONNECT), exc)
    assert type(error) is expected and text in str(error)


def test_credentials_that_cannot_be_read_are_retryable():
    at = sftp_attempt(READ_CREDENTIALS)
    at.target = "flows.downstream.key_file /etc/rostergate/key"
    error = mapped(paramiko_errors, at, PermissionError(errno.EACCES, "Permission denied"))
    assert isinstance(error, RetryableError)
    assert str(error).startswith("cannot read flows.downstream.key_file /etc/rostergate/key: Permission denied")


def test_our_own_delivery_errors_pass_unchanged():
    own = FinalError("the file to deliver is not the one that was checked")
    for boundary, at in ((os_errors, folder_attempt("write")), (paramiko_errors, sftp_attempt("write"))):
        with pytest.raises(FinalError) as caught, boundary(at):
            raise own
        assert caught.value is own


def test_a_remote_name_with_an_unknown_placeholder_is_a_final_error_naming_the_key():
    down = Downstream(url="file:///out", scheme="file", path="/out", remote_name="{acount}-{run_id}.zip")
    with pytest.raises(FinalError, match="flows.downstream.remote_name '{acount}-{run_id}.zip' cannot be filled in"):
        remote_name(down, "district-a", "r1")
    assert remote_name(Downstream(url="file:///out", scheme="file", path="/out"), "district-a", "r1") == \
        "district-a-r1.zip"
