"""Delivery to an SFTP downstream with paramiko and a pinned host key. Delivered means verified.

Every step of it, reading the credential files, setting the client up,
connecting and the transfer, runs inside :func:`~rostergate.forward.boundary.paramiko_errors`,
which maps paramiko's, the socket's and the OS's errors into our own
:class:`~rostergate.errors.RetryableError` and :class:`~rostergate.errors.FinalError`.

:meth:`SftpForwarder.deliver` returns a :class:`~rostergate.forward.protocol.Receipt`
only when all of this holds:

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

Speed (issue 14): the transport prefers AES-GCM (:data:`PREFERRED_CIPHERS`: no separate MAC,
and AES runs in hardware), and WRITEs are as large as the server takes: ``limits@openssh.com``
gives its maximum write length where it is offered (OpenSSH: 255 KiB), else paramiko's 32 KiB.
At most :data:`IN_FLIGHT_BYTES` of WRITEs are unanswered at a time; nothing is read ahead.

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
"""

from __future__ import annotations

import dataclasses
import posixpath
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import paramiko
import structlog
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
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
)
from paramiko.sftp_attr import SFTPAttributes

from rostergate import timeutil
from rostergate.config import Downstream
from rostergate.errors import DeliveryError, FinalError, RetryableError
from rostergate.forward.boundary import (
    CONNECT,
    OPEN,
    READ_CREDENTIALS,
    READ_PREPARED,
    SET_UP,
    Attempt,
    WriteRefused,
    os_errors,
    paramiko_errors,
)
from rostergate.forward.protocol import Receipt, partial_name
from rostergate.forward.source import Source, check_unchanged
from rostergate.sshkeys import fingerprint, parse_host_key

log = structlog.get_logger("rostergate.forward")

POSIX_RENAME = "posix-rename@openssh.com"
LIMITS = "limits@openssh.com"
SFTP_VERSION = 3  # what paramiko speaks (paramiko.sftp._VERSION)
# AES-GCM first: an AEAD cipher needs no separate MAC, and AES runs in hardware, where
# paramiko's default (aes128-ctr with hmac-sha2-256) spends a third of a transfer on the MAC.
# The other ciphers keep paramiko's order after them.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
# The largest WRITE sent (when the server's limits allow it): OpenSSH's sftp client sends this much.
MAX_WRITE_BYTES = 255 * 1024
# Unanswered WRITE bytes at most: enough to keep the server's 2 MiB SSH window full.
IN_FLIGHT_BYTES = 4 * 1024 * 1024
# A WRITE's header is sent joined to this much of the request (paramiko's SSH packets carry at most
# the server's maximum packet size less 64 bytes: 32,704 with OpenSSH), so it adds no packet.
FIRST_PIECE = 32 * 1024 - 64


def login(downstream: Downstream) -> paramiko.SSHClient:
    """A client logged in to ``downstream`` with its credentials and pinned host key (the caller closes it).

    Raises :class:`~rostergate.errors.RetryableError` (unreachable, a credential file
    unreadable) or :class:`~rostergate.errors.FinalError` (login refused, host key
    mismatch, an unusable key file), mapped by the same boundary as a delivery.
    Used by every delivery and by ``check-config --connect``.
    """
    at = _attempt(downstream, "")
    with paramiko_errors(at):
        return _login(downstream, at)


class SftpForwarder:
    """A :class:`~rostergate.forward.protocol.Forwarder` to the SFTP server of ``downstream``."""

    def __init__(self, downstream: Downstream):
        self.downstream = downstream

    def written_path(self, remote_name: str) -> str:
        name = partial_name(remote_name) if self.downstream.temp_name else remote_name
        return posixpath.join(self.downstream.path, name)

    def deliver(self, zip_path: Path, remote_name: str, expected_sha256: str | None = None,
                stale: Sequence[str] = ()) -> Receipt:
        down = self.downstream
        at = _attempt(down, zip_path.name)
        transfer = _Transfer(zip_path, down, posixpath.join(down.path, remote_name), self.written_path(remote_name),
                             expected_sha256, at)
        client: paramiko.SSHClient | None = None
        try:
            with paramiko_errors(at), ThreadPoolExecutor(1, thread_name_prefix="rostergate-check") as side:
                # Written in place (no temp name), a changed file would be seen under its final name
                # before the hash taken while sending refuses it: it is checked first, while the
                # client logs in. With a temp name, that hash refuses it before the rename, so a
                # second pass over the ZIP could not change the outcome and is not made.
                checked = None
                if expected_sha256 is not None and not down.temp_name:
                    checked = side.submit(_check_unchanged, zip_path, expected_sha256, at)
                try:
                    client = _login(down, at)
                finally:
                    if checked is not None:
                        checked.result()  # a changed file is refused before anything else
                at.phase = "start SFTP"
                with _Session.start(client, max(down.connect_timeout, 60.0)) as sftp:
                    return transfer.run(sftp, stale)
        finally:
            if client is not None:
                client.close()


def _check_unchanged(zip_path: Path, expected_sha256: str, at: Attempt) -> None:
    """:func:`check_unchanged`, its OS errors named as the reading of the prepared file (whatever ``at`` says now)."""
    with os_errors(dataclasses.replace(at, phase=READ_PREPARED, target=zip_path.name)):
        check_unchanged(zip_path, expected_sha256)


def _attempt(down: Downstream, target: str) -> Attempt:
    return Attempt(who="the downstream server", server=f"{down.host}:{down.port}", folder=down.path,
                   username=down.username, target=target)


def _login(down: Downstream, at: Attempt) -> paramiko.SSHClient:
    """Read the credentials, set the client up and log in; inside the caller's :func:`paramiko_errors`."""
    password = _password(down, at)
    key = _private_key(down, at)
    at.phase = SET_UP
    client = _client(down, at)
    try:
        at.phase = CONNECT
        client.connect(
            down.host, port=down.port, username=down.username, password=password, pkey=key,
            timeout=down.connect_timeout, banner_timeout=down.connect_timeout,
            auth_timeout=down.connect_timeout, allow_agent=False, look_for_keys=False,
            transport_factory=_transport,
        )
    except BaseException:
        client.close()
        raise
    return client


def _transport(*args: Any, **kwargs: Any) -> paramiko.Transport:
    """paramiko's Transport with :data:`PREFERRED_CIPHERS` first (the same set of ciphers, reordered)."""
    transport = paramiko.Transport(*args, **kwargs)
    options = transport.get_security_options()
    offered: tuple[str, ...] = tuple(options.ciphers)
    options.ciphers = tuple(c for c in PREFERRED_CIPHERS if c in offered) + tuple(
        c for c in offered if c not in PREFERRED_CIPHERS)
    return transport


def _client(down: Downstream, at: Attempt) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    host_entry = down.host if down.port == 22 else f"[{down.host}]:{down.port}"
    if down.known_hosts:
        _read_secret(down.known_hosts, "known_hosts", at)
        at.phase = SET_UP
        client.load_host_keys(str(down.known_hosts))
    if down.host_key:
        key = parse_host_key(down.host_key)
        client.get_host_keys().add(host_entry, key.get_name(), key)
    client.set_missing_host_key_policy(_PinnedHostKey())
    return client


def _password(down: Downstream, at: Attempt) -> str | None:
    if not down.password_file:
        return None
    secret = _read_secret(down.password_file, "password_file", at)
    return secret.decode("utf-8").rstrip("\r\n")


def _private_key(down: Downstream, at: Attempt) -> paramiko.PKey | None:
    """The ``key_file``'s key, loaded here so that a key paramiko cannot use is named as such.

    Left to ``SSHClient.connect(key_filename=...)``, a damaged key surfaced as "cannot
    reach HOST" (retried as if the server were down) and a key with a passphrase as
    a refused login.
    """
    if not down.key_file:
        return None
    _read_secret(down.key_file, "key_file", at)  # missing or unreadable: retryable, with a clear message
    try:
        return paramiko.PKey.from_path(down.key_file)
    except (paramiko.SSHException, paramiko.UnknownKeyType, ValueError, TypeError) as exc:
        raise FinalError(f"flows.downstream.key_file {down.key_file} cannot be used as a private key "
                         f"({exc}); it must be an OpenSSH private key without a passphrase") from exc


def _read_secret(path: Path, key: str, at: Attempt) -> bytes:
    """The file a ``flows.downstream`` key names (read on every attempt: it may change or vanish)."""
    at.phase, at.target = READ_CREDENTIALS, f"flows.downstream.{key} {path}"
    return path.read_bytes()


class _PinnedHostKey(paramiko.MissingHostKeyPolicy):
    """Accept only the configured key; paramiko calls this for any key not in its store."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise FinalError(
            f"host key mismatch for {hostname}: the server offered {key.get_name()} "
            f"SHA256:{fingerprint(key)}, which is not the pinned key; check the server and "
            "update flows.downstream.host_key if it really changed"
        )


class _Wire(Protocol):
    """The private request layer of paramiko's SFTP client (paramiko 3.x) that this module drives."""

    def _send_packet(self, t: int, packet: paramiko.Message) -> None: ...
    def _read_packet(self) -> tuple[int, bytes]: ...
    def _request(self, t: int, *args: object) -> tuple[int, paramiko.Message]: ...
    def _async_request(self, fileobj: object, t: int, *args: object) -> int: ...
    def _read_response(self, waitfor: int | None = None) -> tuple[int | None, paramiko.Message | None]: ...
    def _convert_status(self, msg: paramiko.Message) -> None: ...


def _wire(sftp: paramiko.SFTPClient) -> _Wire:
    return cast(_Wire, sftp)


class _Session(paramiko.SFTPClient):
    """paramiko's SFTP client, keeping the extension names the server offers (paramiko reads and drops them)."""

    extensions: frozenset[str] = frozenset()

    @classmethod
    def start(cls, client: paramiko.SSHClient, timeout: float) -> _Session:
        """An SFTP session on ``client``'s connection, its requests timing out after ``timeout`` seconds."""
        transport = client.get_transport()
        session: _Session | None = cls.from_transport(transport) if transport is not None else None
        channel = session.get_channel() if session is not None else None
        if session is None or channel is None:
            raise SFTPError("the server did not open an SFTP session")
        channel.settimeout(timeout)
        return session

    def write_size(self) -> int:
        """The size of the WRITEs to send: the server's maximum write length (``limits@openssh.com``)
        up to :data:`MAX_WRITE_BYTES`, or paramiko's 32 KiB where the server does not say."""
        default: int = paramiko.SFTPFile.MAX_REQUEST_SIZE
        if LIMITS not in self.extensions:
            return default
        kind, reply = _wire(self)._request(CMD_EXTENDED, LIMITS)
        if kind != CMD_EXTENDED_REPLY or reply is None:
            return default
        reply.get_int64()  # max packet length
        reply.get_int64()  # max read length
        write_length: int = reply.get_int64()
        return min(write_length, MAX_WRITE_BYTES) if write_length > 0 else default

    def send_write(self, receiver: paramiko.SFTPFile, handle: bytes, offset: int, data: bytes | memoryview) -> int:
        """Send one WRITE whose answer goes to ``receiver``; returns its request number.

        Only the request's header and the start of ``data`` (one SSH packet's worth) are copied
        to be sent together; the rest is handed to the channel as views (paramiko's request path
        copies the whole request three times: into a Message, out of it, and onto its length prefix).
        """
        with self._lock:  # paramiko's lock over its request numbers and their receivers
            number: int = self.request_number
            self._expecting[number] = receiver
            self.request_number += 1
        size = len(data)
        head = struct.pack(">IBII", 1 + 4 + 4 + len(handle) + 8 + 4 + size, CMD_WRITE, number, len(handle))
        head += handle + struct.pack(">QI", offset, size)
        view = memoryview(data)
        start = max(0, FIRST_PIECE - len(head))
        self._write_all(head + view[:start])
        self._write_all(view[start:])
        return number

    def _write_all(self, out: bytes | memoryview) -> None:
        """Send ``out`` whole over the channel, which takes it a packet at a time.

        paramiko's own slices what is left after each packet (``out = out[n:]``): a
        255 KiB WRITE was copied about four times over; a memoryview copies nothing.
        """
        view = memoryview(out)
        while view:
            sent = self.sock.send(view)
            if sent <= 0:
                raise EOFError()
            view = view[sent:]

    def _send_version(self) -> int:
        init = paramiko.Message()
        init.add_int(SFTP_VERSION)
        _wire(self)._send_packet(CMD_INIT, init)
        kind, data = _wire(self)._read_packet()
        if kind != CMD_VERSION:
            raise SFTPError("Incompatible sftp protocol")
        reply = paramiko.Message(data)
        version: int = reply.get_int()
        names = []
        while reply.packet.tell() < len(data):
            names.append(reply.get_text())
            reply.get_binary()  # the extension's data
        self.extensions = frozenset(names)
        return version


class _CheckedFile(paramiko.SFTPFile):
    """An SFTPFile open for writing whose every pipelined WRITE status, and the CLOSE status, raise.

    Writes are pipelined (at most :attr:`window` unanswered): each WRITE names
    this file as the receiver of its answer, so paramiko hands every status to
    :meth:`_async_response`, in whatever order the server answers.
    """

    _realpos: int  # paramiko's BufferedFile keeps these two
    _closed: bool

    @classmethod
    def create(cls, sftp: _Session, path: str, write_size: int) -> _CheckedFile:
        """Open ``path`` for writing, created or truncated (what a crashed attempt left there is overwritten).

        Each WRITE carries at most ``write_size`` bytes; at most :data:`IN_FLIGHT_BYTES`
        of them (and at least four WRITEs) are unanswered at a time.
        """
        kind, msg = _wire(sftp)._request(CMD_OPEN, path, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC,
                                         SFTPAttributes())
        if kind != CMD_HANDLE:
            raise SFTPError("Expected handle")
        return cls(sftp, msg.get_binary(), "wb", write_size)

    def __init__(self, sftp: _Session, handle: bytes, mode: str, write_size: int):
        super().__init__(sftp, handle, mode)
        self.session = sftp
        self.MAX_REQUEST_SIZE = write_size  # paramiko's class attribute, per file here
        self.window = max(4, IN_FLIGHT_BYTES // write_size)  # unanswered WRITEs at most
        self._unanswered: dict[int, int] = {}  # request number -> offset
        self._refused: WriteRefused | None = None

    def _write(self, data: bytes | memoryview) -> int:
        chunk = data[: self.MAX_REQUEST_SIZE]
        offset = self._realpos
        number = self.session.send_write(self, self.handle, offset, chunk)
        self._unanswered[number] = offset
        while len(self._unanswered) > self.window:
            _wire(self.sftp)._read_response()
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
            _wire(self.sftp)._convert_status(msg)
        except (OSError, EOFError, SFTPError) as exc:
            self._refused = self._refused or WriteRefused(offset, exc)

    def wait_for_acks(self) -> None:
        """Read the answer of every WRITE sent; raises the first error status."""
        while self._unanswered:
            _wire(self.sftp)._read_response()
        if self._refused:
            raise self._refused

    def close(self) -> None:
        """Wait for every WRITE's answer, then CLOSE; an error status of either raises."""
        if self._closed:
            return
        self.wait_for_acks()
        self._closed = True
        _wire(self.sftp)._request(CMD_CLOSE, self.handle)

    def discard(self) -> None:
        """Close after a failure, ignoring what the server says (the caller raises the failure)."""
        if self._closed:
            return
        self._closed = True
        try:
            _wire(self.sftp)._request(CMD_CLOSE, self.handle)
        except (OSError, EOFError, paramiko.SSHException):
            pass


class _Transfer:
    """One SFTP transfer on an open session; keeps ``at`` (phase and file) up to date for the boundary."""

    def __init__(self, zip_path: Path, downstream: Downstream, final: str, written: str, expected: str | None,
                 at: Attempt):
        self.zip_path, self.downstream, self.expected = zip_path, downstream, expected
        self.final, self.written, self.at = final, written, at

    def run(self, sftp: _Session, stale: Sequence[str]) -> Receipt:
        self.at.phase = "clean up"
        for path in stale:
            if posixpath.dirname(path) == posixpath.normpath(self.downstream.path) and path != self.written:
                self.at.target = path
                self._remove_quietly(sftp, path, "delivery_stale_removed")
        self.at.phase, self.at.target = READ_PREPARED, self.zip_path.name
        with open(self.zip_path, "rb") as local:
            self.at.phase, self.at.target = OPEN, self.written
            handle = _CheckedFile.create(sftp, self.written, sftp.write_size())
            try:
                size, sha256, verified = self._send(handle, local)
            except BaseException as exc:
                if _server_answered(exc):
                    handle.discard()
                    self._remove_quietly(sftp, self.written, "delivery_partial_removed")
                raise
        if self.written != self.final:
            self._rename_into_place(sftp)
        if self.downstream.verify == "stat":
            self.at.phase, self.at.target = "stat", self.final
            held = sftp.stat(self.final).st_size
            if held != size:
                self._remove_quietly(sftp, self.final, "delivery_short_file_removed")
                raise RetryableError(self._short(held, size))
            verified = "stat"
        return Receipt(self.downstream.url, self.final, size, sha256, timeutil.iso(), verified)

    def _send(self, handle: _CheckedFile, local: BinaryIO) -> tuple[int, str, str]:
        self.at.phase = "write"
        source = Source(local)
        for block in source.blocks():
            handle.write(block)
        handle.wait_for_acks()
        sha256 = source.check(self.expected)
        verified = "acks"
        if self.downstream.verify == "size-on-handle":
            self.at.phase = "fstat"
            held = self._size_on_handle(handle)
            if held is not None:
                if held != source.size:
                    raise RetryableError(self._short(held, source.size))
                verified = "size-on-handle"
        self.at.phase = "close"
        handle.close()
        return source.size, sha256, verified

    def _size_on_handle(self, handle: _CheckedFile) -> int | None:
        try:
            size: int | None = handle.stat().st_size  # paramiko is untyped: what it returns is stated here
            return size
        except (OSError, EOFError) as exc:
            if not _server_answered(exc):
                raise
            log.warning("delivery_fstat_refused", host=self.downstream.host,
                        hint="the write acknowledgements and the close status are the check; "
                             "verify = \"none\" says so explicitly")
            return None

    def _rename_into_place(self, sftp: _Session) -> None:
        self.at.phase = "rename"
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

    def _short(self, held: int | None, size: int) -> str:
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
    if isinstance(exc, (WriteRefused, DeliveryError, EOFError)):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, (TimeoutError, ConnectionError))
