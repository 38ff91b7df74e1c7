"""Downstream delivery: paramiko SFTP with a pinned host key, or a local folder. Delivered means verified.

The one place that maps paramiko's and the OS's errors into our own
:class:`RetryableError` (try again later: the server is down, its disk is full,
a credential file is missing) and :class:`FinalError` (retrying cannot help: a
host key mismatch, a refused login, a missing folder, no permission to write,
a file to deliver that is not the one that was checked).

:func:`deliver` returns a :class:`Receipt` only when all of this holds:

* The bytes sent are the prepared ZIP's, and their SHA-256 (hashed while they
  are sent) is the one the run recorded when the ZIP was checked; otherwise the
  delivery is refused. The receipt carries that hash.
* The server answered every WRITE, and the CLOSE, with OK. paramiko's own
  pipelined writes cannot promise this: ``SFTPFile._write`` sends each WRITE with
  no receiver for its answer, so an error status read while paramiko waits for
  another answer is dropped, and ``SFTPFile.close()`` drains nothing (it looks
  for answers addressed to the file) and swallows the CLOSE status. With the
  downstream's disk full, ``putfo(confirm=False)`` returned normally for a file
  cut at 1 MiB of 1.2 MiB. :class:`_CheckedFile` names itself as the receiver of
  every WRITE it sends, so each status reaches it whatever the order of the
  answers, and the first error raises.
* The size on the server is the size sent, checked as the downstream's
  ``verify`` setting says:

  ``stat`` (default)
      STAT of the final name after the close (and the rename).
  ``size-on-handle`` (default when ``temp_name = false``, so for Apple)
      FSTAT of the still-open handle before the close, and no request on the
      name after it: Apple's drop box hides a file as soon as it is written
      (asm.md §2.4), so a STAT after the close fails although the upload
      worked. A server that answers FSTAT with an error status leaves the
      write acknowledgements and the close status as the check (logged as
      ``delivery_fstat_refused``; the receipt says ``verified: "acks"``).
  ``none``
      The acknowledgement of every write and the close status only.

Where the downstream allows it (``temp_name = true``, the default except for
Apple's host) the file is written as ``.<name>.partial`` and renamed into place
(posix-rename@openssh.com when the server offers it, else remove the target and
rename), so no reader ever sees a partial file under the final name. With
``temp_name = false`` the final name is opened with truncation, so the run's
next attempt overwrites whatever a crash left there. A failed attempt whose
server still answers removes what it wrote; what a crashed attempt of another
run left behind is passed in as ``stale`` (the pipeline knows it from the
history) and removed first. A write refused for lack of space or quota is
retryable, a refused permission is final: never ``delivered``.

A ``file://`` folder delivery writes ``.<name>.partial``, fsyncs it, checks its
size, renames it and fsyncs the folder; a full disk is retryable.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko
import structlog
from paramiko.sftp import (
    _VERSION,
    CMD_CLOSE,
    CMD_HANDLE,
    CMD_INIT,
    CMD_OPEN,
    CMD_STATUS,
    CMD_VERSION,
    CMD_WRITE,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
    SFTPError,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

from rostergate import timeutil
from rostergate.config import Downstream
from rostergate.errors import DeliveryError, FinalError, RetryableError

log = structlog.get_logger("rostergate.forward")

BLOCK = 1 << 20  # bytes read from the local file at a time (sent as 32 KiB WRITEs)
POSIX_RENAME = "posix-rename@openssh.com"


@dataclass(frozen=True)
class Receipt:
    """A verified delivery: where the file is, and the size and SHA-256 of the bytes sent."""

    destination: str  # the downstream URL as configured (it never holds a password)
    remote: str  # the delivered file's path on the downstream server, or in the folder
    size: int
    sha256: str
    finished_at: str
    verified: str  # how the size was checked: "stat", "size-on-handle" or "acks" (write and close statuses)

    def to_dict(self) -> dict:
        return asdict(self)


def partial_name(remote_name: str) -> str:
    return f".{remote_name}.partial"


def written_path(downstream: Downstream, remote_name: str) -> str:
    """Where an attempt writes before it is verified: what a crash in the middle can leave behind."""
    uses_temp = downstream.scheme == "file" or downstream.temp_name
    return posixpath.join(downstream.path, partial_name(remote_name) if uses_temp else remote_name)


def deliver(zip_path: Path, downstream: Downstream, remote_name: str, expected_sha256: str | None = None,
            stale: Iterable[str] = ()) -> Receipt:
    """Deliver ``zip_path`` as ``remote_name`` and verify it; blocking.

    ``expected_sha256``: the hash recorded when the ZIP was checked; the bytes
    sent must have it. ``stale``: paths that crashed attempts left on this
    downstream (see :func:`written_path`), removed first where the server lets us.
    Raises :class:`RetryableError` or :class:`FinalError`.
    """
    if expected_sha256 is not None:
        _check_unchanged(zip_path, expected_sha256)
    if downstream.scheme == "file":
        return _deliver_to_folder(zip_path, downstream, remote_name, expected_sha256, list(stale))
    return _deliver_sftp(zip_path, downstream, remote_name, expected_sha256, list(stale))


# -- the bytes sent -------------------------------------------------------------------
class _Source:
    """The local ZIP read in blocks, hashed and counted as it is read."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def blocks(self) -> Iterator[bytes]:
        for block in iter(lambda: self.handle.read(BLOCK), b""):
            self.digest.update(block)
            self.size += len(block)
            yield block

    def check(self, expected: str | None) -> str:
        """The SHA-256 of what was read; raises :class:`FinalError` when it is not ``expected``."""
        sent = self.digest.hexdigest()
        if expected is not None and sent != expected:
            raise FinalError(_CHANGED)
        return sent


_CHANGED = ("the file to deliver is not the one that was checked (its SHA-256 differs from the one recorded "
            "after the checks); nothing was delivered; 'rostergate runs retry RUN_ID' prepares it again")


def _check_unchanged(zip_path: Path, expected: str) -> None:
    try:
        with open(zip_path, "rb") as handle:
            source = _Source(handle)
            for _ in source.blocks():
                pass
    except FileNotFoundError:
        raise FinalError(f"the prepared file {zip_path.name} is missing; "
                         "'rostergate runs retry RUN_ID' prepares it again") from None
    except OSError as exc:
        raise RetryableError(f"cannot read the prepared file {zip_path.name}: {exc.strerror}") from None
    source.check(expected)


# -- local folder ---------------------------------------------------------------------
def _deliver_to_folder(zip_path: Path, downstream: Downstream, remote_name: str, expected: str | None,
                       stale: list[str]) -> Receipt:
    folder = Path(downstream.path)
    target, partial = folder / remote_name, folder / partial_name(remote_name)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in stale:
            if Path(path).parent == folder and Path(path) != partial:
                Path(path).unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a partial file of an older attempt keeps its mode otherwise
            with open(zip_path, "rb") as local, os.fdopen(fd, "wb", closefd=False) as out:
                source = _Source(local)
                for block in source.blocks():
                    out.write(block)
                out.flush()
                os.fsync(fd)
        finally:
            os.close(fd)
        sha256 = source.check(expected)
        held = partial.stat().st_size
        if held != source.size:
            raise RetryableError(f"{partial} holds {held} of {source.size} bytes after writing")
        os.replace(partial, target)
        _fsync_dir(folder)
    except DeliveryError:
        partial.unlink(missing_ok=True)
        raise
    except PermissionError as exc:
        _unlink_quietly(partial)
        raise FinalError(f"no permission to write in {folder}: {exc.strerror}") from None
    except OSError as exc:
        _unlink_quietly(partial)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise RetryableError(f"the disk of {folder} is full ({exc.strerror}); nothing was delivered") from None
        raise RetryableError(f"cannot write to {folder}: {exc.strerror}") from None
    return Receipt(downstream.url, str(target), source.size, sha256, timeutil.iso(), "stat")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


# -- SFTP: the client ------------------------------------------------------------------
class _PinnedHostKey(paramiko.MissingHostKeyPolicy):
    """Accept only the configured key; paramiko calls this for any key not in its store."""

    def missing_host_key(self, client, hostname, key):  # noqa: ANN001 - paramiko's signature
        raise FinalError(
            f"host key mismatch for {hostname}: the server offered {key.get_name()} "
            f"SHA256:{_fingerprint(key)}, which is not the pinned key; check the server and "
            "update flows.downstream.host_key if it really changed"
        )


def _fingerprint(key: paramiko.PKey) -> str:
    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def parse_host_key(line: str) -> paramiko.PKey:
    """Parse a pinned ``"ssh-ed25519 AAAA..."`` line; raises ValueError when it is not a key."""
    try:
        key_type, key_data = line.split()[:2]
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(key_data, validate=True))
    except (ValueError, paramiko.SSHException, base64.binascii.Error) as exc:
        raise ValueError(f"not a usable OpenSSH public key ({exc})") from None


def _client(downstream: Downstream) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    host_entry = downstream.host if downstream.port == 22 else f"[{downstream.host}]:{downstream.port}"
    if downstream.known_hosts:
        _readable(downstream.known_hosts, "known_hosts")
        client.load_host_keys(str(downstream.known_hosts))
    if downstream.host_key:
        key = parse_host_key(downstream.host_key)
        client.get_host_keys().add(host_entry, key.get_name(), key)
    client.set_missing_host_key_policy(_PinnedHostKey())
    return client


def _readable(path: Path, key: str) -> bytes:
    """The file a ``flows.downstream`` key names; a clear retryable error when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RetryableError(
            f"cannot read flows.downstream.{key} {path}: {exc.strerror}; restore it "
            "(the delivery is retried; 'rostergate runs retry RUN_ID' after a give-up)"
        ) from None


def _password(downstream: Downstream) -> str | None:
    if not downstream.password_file:
        return None
    try:
        return _readable(downstream.password_file, "password_file").decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise FinalError(f"flows.downstream.password_file {downstream.password_file} is not UTF-8 text") from None


class _Session(paramiko.SFTPClient):
    """paramiko's SFTP client, keeping the extension names the server offers (paramiko reads and drops them)."""

    extensions: frozenset[str] = frozenset()

    def _send_version(self) -> int:
        init = paramiko.Message()
        init.add_int(_VERSION)
        self._send_packet(CMD_INIT, init)
        kind, data = self._read_packet()
        if kind != CMD_VERSION:
            raise SFTPError("Incompatible sftp protocol")
        reply = paramiko.Message(data)
        version = reply.get_int()
        names = []
        while reply.packet.tell() < len(data):
            names.append(reply.get_text())
            reply.get_binary()  # the extension's data
        self.extensions = frozenset(names)
        return version


class _WriteRefused(Exception):
    """The server answered a WRITE with an error status."""

    def __init__(self, offset: int, cause: BaseException):
        super().__init__(f"at byte {offset}: {cause}")
        self.offset, self.cause = offset, cause


class _CheckedFile(paramiko.SFTPFile):
    """An SFTPFile open for writing whose every pipelined WRITE status, and the CLOSE status, raise.

    Writes are pipelined (at most :attr:`WINDOW` unanswered): each WRITE names
    this file as the receiver of its answer, so paramiko hands every status to
    :meth:`_async_response`, in whatever order the server answers.
    """

    WINDOW = 64  # unanswered WRITEs: 64 x 32 KiB = paramiko's 2 MiB SSH window

    @classmethod
    def create(cls, sftp: paramiko.SFTPClient, path: str) -> _CheckedFile:
        """Open ``path`` for writing, created or truncated (what a crashed attempt left there is overwritten)."""
        kind, msg = sftp._request(CMD_OPEN, path, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC,
                                  SFTPAttributes())
        if kind != CMD_HANDLE:
            raise SFTPError("Expected handle")
        return cls(sftp, msg.get_binary(), "wb")

    def __init__(self, sftp: paramiko.SFTPClient, handle: bytes, mode: str):
        super().__init__(sftp, handle, mode)
        self._unanswered: dict[int, int] = {}  # request number -> offset
        self._refused: _WriteRefused | None = None

    def _write(self, data) -> int:  # paramiko passes bytes or a memoryview
        chunk = data[: self.MAX_REQUEST_SIZE]
        offset = self._realpos
        number = self.sftp._async_request(self, CMD_WRITE, self.handle, int64(offset), chunk)
        self._unanswered[number] = offset
        while len(self._unanswered) > self.WINDOW:
            self.sftp._read_response()
        if self._refused:
            raise self._refused
        return len(chunk)

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        offset = self._unanswered.pop(num, None)
        if offset is None:
            return
        try:
            if t != CMD_STATUS:
                raise SFTPError("Expected status")
            self.sftp._convert_status(msg)
        except (OSError, EOFError, SFTPError) as exc:
            self._refused = self._refused or _WriteRefused(offset, exc)

    def wait_for_acks(self) -> None:
        """Read the answer of every WRITE sent; raises the first error status."""
        while self._unanswered:
            self.sftp._read_response()
        if self._refused:
            raise self._refused

    def close(self) -> None:
        """Wait for every WRITE's answer, then CLOSE; an error status of either raises."""
        if self._closed:
            return
        self.wait_for_acks()
        self._closed = True
        self.sftp._request(CMD_CLOSE, self.handle)

    def discard(self) -> None:
        """Close after a failure, ignoring what the server says (the caller raises the failure)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.sftp._request(CMD_CLOSE, self.handle)
        except (OSError, EOFError, paramiko.SSHException):
            pass


# -- SFTP: one delivery ----------------------------------------------------------------
class _Attempt:
    """One SFTP delivery; ``phase`` names what it was doing when something failed."""

    def __init__(self, zip_path: Path, downstream: Downstream, remote_name: str, expected: str | None):
        self.zip_path, self.downstream, self.expected = zip_path, downstream, expected
        self.final = posixpath.join(downstream.path, remote_name)
        self.written = written_path(downstream, remote_name)
        self.phase = "connect"

    def run(self, sftp: _Session, stale: list[str]) -> Receipt:
        self.phase = "clean up"
        for path in stale:
            if posixpath.dirname(path) == posixpath.normpath(self.downstream.path) and path != self.written:
                self._remove_quietly(sftp, path, "delivery_stale_removed")
        self.phase = "open"
        handle = _CheckedFile.create(sftp, self.written)
        try:
            size, sha256, verified = self._send(handle)
        except BaseException as exc:
            if _server_answered(exc):
                handle.discard()
                self._remove_quietly(sftp, self.written, "delivery_partial_removed")
            raise
        if self.written != self.final:
            self._rename_into_place(sftp)
        if self.downstream.verify == "stat":
            self.phase = "stat"
            held = sftp.stat(self.final).st_size
            if held != size:
                self._remove_quietly(sftp, self.final, "delivery_short_file_removed")
                raise RetryableError(self._short(held, size))
            verified = "stat"
        return Receipt(self.downstream.url, self.final, size, sha256, timeutil.iso(), verified)

    def _send(self, handle: _CheckedFile) -> tuple[int, str, str]:
        self.phase = "write"
        with open(self.zip_path, "rb") as local:
            source = _Source(local)
            for block in source.blocks():
                handle.write(block)
        handle.wait_for_acks()
        sha256 = source.check(self.expected)
        verified = "acks"
        if self.downstream.verify == "size-on-handle":
            self.phase = "fstat"
            held = self._size_on_handle(handle)
            if held is not None:
                if held != source.size:
                    raise RetryableError(self._short(held, source.size))
                verified = "size-on-handle"
        self.phase = "close"
        handle.close()
        return source.size, sha256, verified

    def _size_on_handle(self, handle: _CheckedFile) -> int | None:
        try:
            return handle.stat().st_size
        except (OSError, EOFError) as exc:
            if not _server_answered(exc):
                raise
            log.warning("delivery_fstat_refused", host=self.downstream.host,
                        hint="the write acknowledgements and the close status are the check; "
                             "verify = \"none\" says so explicitly")
            return None

    def _rename_into_place(self, sftp: _Session) -> None:
        self.phase = "rename"
        try:
            if POSIX_RENAME in sftp.extensions:
                sftp.posix_rename(self.written, self.final)
                return
            try:
                sftp.remove(self.final)
            except FileNotFoundError:
                pass
            sftp.rename(self.written, self.final)
        except BaseException as exc:
            if _server_answered(exc):
                self._remove_quietly(sftp, self.written, "delivery_partial_removed")
            raise

    def _short(self, held: int, size: int) -> str:
        return (f"the downstream server holds {held} of the {size} bytes sent as {self.final}; "
                "it was not delivered")

    def _remove_quietly(self, sftp: _Session, path: str, event: str) -> None:
        try:
            sftp.remove(path)
        except FileNotFoundError:
            return
        except (OSError, EOFError, paramiko.SSHException):
            return  # the server keeps it (a drop box may hide it already); the next attempt truncates it
        log.info(event, host=self.downstream.host, remote=posixpath.basename(path))


def _server_answered(exc: BaseException) -> bool:
    """True when the failure was an answer of a still-working session (worth cleaning up after)."""
    if isinstance(exc, (_WriteRefused, DeliveryError, EOFError)):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, (TimeoutError, ConnectionError))


def _deliver_sftp(zip_path: Path, downstream: Downstream, remote_name: str, expected: str | None,
                  stale: list[str]) -> Receipt:
    attempt = _Attempt(zip_path, downstream, remote_name, expected)
    client: paramiko.SSHClient | None = None
    try:
        password = _password(downstream)
        if downstream.key_file:
            _readable(downstream.key_file, "key_file")
        client = _client(downstream)
        client.connect(
            downstream.host, port=downstream.port, username=downstream.username, password=password,
            key_filename=str(downstream.key_file) if downstream.key_file else None,
            timeout=downstream.connect_timeout, banner_timeout=downstream.connect_timeout,
            auth_timeout=downstream.connect_timeout, allow_agent=False, look_for_keys=False,
        )
        attempt.phase = "start SFTP"
        with _Session.from_transport(client.get_transport()) as sftp:
            sftp.get_channel().settimeout(max(downstream.connect_timeout, 60.0))
            return attempt.run(sftp, stale)
    except DeliveryError:
        raise
    except paramiko.AuthenticationException:
        raise FinalError(
            f"the downstream server refused the login of {downstream.username!r}; "
            "check flows.downstream.password_file / key_file"
        ) from None
    except paramiko.BadHostKeyException as exc:
        raise FinalError(
            f"host key mismatch for {downstream.host}: the server offered SHA256:{_fingerprint(exc.key)}, "
            "which is not the pinned key"
        ) from None
    except _WriteRefused as exc:
        raise _refused_write(exc, attempt) from None
    except PermissionError:
        raise FinalError(f"the downstream server refused to {attempt.phase} {attempt.written} "
                         "(permission denied)") from None
    except FileNotFoundError:
        if attempt.phase == "open":
            raise FinalError(f"the downstream folder {downstream.path} does not exist") from None
        raise RetryableError(f"the downstream server lost {attempt.written} during the {attempt.phase}; "
                             "nothing was delivered") from None
    except (OSError, EOFError, paramiko.SSHException, SFTPError) as exc:
        if attempt.phase == "connect":
            raise RetryableError(f"cannot reach {downstream.host}:{downstream.port}: {exc}") from None
        raise RetryableError(f"delivery to {downstream.host}:{downstream.port} failed during the "
                             f"{attempt.phase}: {exc or type(exc).__name__}; nothing was delivered") from None
    except ValueError as exc:  # a credential file paramiko cannot use
        raise FinalError(f"the downstream credentials cannot be used: {exc}") from None
    finally:
        if client is not None:
            client.close()


def _refused_write(exc: _WriteRefused, attempt: _Attempt) -> DeliveryError:
    where = f"{attempt.written} at byte {exc.offset}"
    if isinstance(exc.cause, PermissionError):
        return FinalError(f"the downstream server refused to write {where} (permission denied)")
    return RetryableError(f"the downstream server refused to write {where} ({exc.cause or 'failure'}): its disk "
                          "may be full or a quota reached; nothing was delivered")

