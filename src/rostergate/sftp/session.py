"""One SFTP session: asyncssh's server handler, with the few changes a tenant server needs.

asyncssh's ``SFTPServerHandler`` does the protocol; :class:`TenantSFTPHandler`
changes only what it must:

* **Trailing bytes are accepted, as OpenSSH does.** asyncssh calls
  ``packet.check_end()`` after decoding every request and answers
  ``SSH_FX_BAD_MESSAGE: Unexpected data at end of packet`` when bytes are left.
  Go's ``pkg/sftp`` (rclone) sends its concurrent ``SSH_FXP_WRITE`` requests from
  32 KiB pooled buffers and, for the last short block, declares a packet length
  that still covers the whole buffer; OpenSSH's ``sftp-server`` simply skips the
  rest of each message ("Discard any remaining input for this request"). So the
  handler's packets have a ``check_end`` that never complains.
* **Inbound packets are capped** (``server.limits.max_packet_bytes``, 256 KiB
  like OpenSSH): a longer packet is answered with ``SSH_FX_BAD_MESSAGE`` naming
  the limit and ends the session, before its body is read.
* **Open handles are capped** per session (``server.limits.max_open_handles``).
* **A client close is told apart from a dropped connection**: only
  ``SSH_FXP_CLOSE`` reaches :meth:`TenantSFTPServer.client_close`; the closes
  asyncssh does while cleaning up a dead session go to ``close()``.
* ``limits@openssh.com`` advertises our real limits; the ``hardlink``,
  ``copy-data`` and ``ranges`` extensions are not offered.
* A session over the account's session limit answers every request with an
  error that says so.
* The account's first session measures what its home stores (quota and entry
  limits, :mod:`rostergate.sftp.files`) before its first request is served.
* **Writes are done off the event loop** (:mod:`rostergate.sftp.writes`):
  ``SSH_FXP_WRITE`` is decoded here without copying its data, checked against the
  limits on the loop (:meth:`TenantSFTPServer.accept_write`), written by a pool
  thread and answered once written, in request order; a pipelining client's
  answers leave several to a channel write. Every other request waits for the
  session's pending writes first, and so does the cleanup of a dropped session
  before it closes the handles.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any, cast

import asyncssh
import structlog
from asyncssh.constants import (
    DEFAULT_LANG,
    FX_BAD_MESSAGE,
    FX_FAILURE,
    FX_NO_SPACE_ON_FILESYSTEM,
    FX_OK,
    FX_PERMISSION_DENIED,
    FX_QUOTA_EXCEEDED,
    FX_WRITE_PROTECT,
    FXP_CLOSE,
    FXP_OPEN,
    FXP_OPENDIR,
    FXP_STATUS,
    FXP_WRITE,
)
from asyncssh.packet import SSHPacket, String, UInt32
from asyncssh.sftp import SFTPLimits, SFTPServerHandler
from asyncssh.stream import SSHReader, SSHServerStreamSession, SSHWriter

from rostergate.sftp.files import ServerState, TenantSFTPServer
from rostergate.sftp.writes import SessionWrites, Write, reason

log = structlog.get_logger("rostergate.sftp")

_DROPPED_EXTENSIONS = {b"hardlink@openssh.com", b"copy-data", b"ranges@asyncssh.com"}
_OS_STATUS = {errno.ENOSPC: FX_NO_SPACE_ON_FILESYSTEM, errno.EDQUOT: FX_QUOTA_EXCEEDED,
              errno.EACCES: FX_PERMISSION_DENIED, errno.EROFS: FX_WRITE_PROTECT}  # as asyncssh maps them
_OK_STATUS = UInt32(FX_OK) + String(b"") + String(b"")
ANSWERS_HELD = 8  # write answers sent together at most (8 x 255 KiB: the client's window covers more)
ANSWER_DELAY = 0.002  # seconds an answer may wait for others while the session's writes go on


def _status_body(exc: Exception, version: int) -> bytes:
    """An ``SSH_FXP_STATUS`` body (code, message, language) for a failed request."""
    if isinstance(exc, asyncssh.SFTPError):
        return exc.encode(version)
    code = FX_FAILURE
    if isinstance(exc, OSError) and exc.errno is not None:
        code = _OS_STATUS.get(exc.errno, FX_FAILURE)
    return asyncssh.SFTPError(code, reason(exc)).encode(version)


def _decode_write(payload: bytes) -> tuple[bytes, int, memoryview]:
    """Handle, offset and data of an ``SSH_FXP_WRITE`` payload (type and id first); the data is
    a view into ``payload``, not a copy. Trailing bytes are ignored (see module doc)."""
    view = memoryview(payload)
    if len(view) < 9:
        raise ValueError("Incomplete packet")
    handle_end = 9 + int.from_bytes(view[5:9], "big")
    data_start = handle_end + 12
    if data_start > len(view):
        raise ValueError("Incomplete packet")
    offset = int.from_bytes(view[handle_end:handle_end + 8], "big")
    data_end = data_start + int.from_bytes(view[handle_end + 8:data_start], "big")
    if data_end > len(view):
        raise ValueError("Incomplete packet")
    return bytes(view[9:handle_end]), offset, view[data_start:data_end]


class _LenientPacket(SSHPacket):
    """An SFTP request whose trailing bytes are ignored, as OpenSSH's sftp-server does."""

    def check_end(self) -> None:
        return None


class TenantSFTPHandler(SFTPServerHandler):
    """asyncssh's SFTP server handler with our caps (see module doc)."""

    _extensions = [(name, data) for name, data in SFTPServerHandler._extensions if name not in _DROPPED_EXTENSIONS]

    def __init__(self, server: TenantSFTPServer, reader: SSHReader[bytes], writer: SSHWriter[bytes], version: int,
                 state: ServerState, touch: Callable[[], None], refusal: str | None = None):
        super().__init__(server, reader, writer, version)
        self._state = state
        self._touch = touch
        self._refusal = refusal
        self._refusal_told = False
        self._max_packet = state.settings.max_packet_bytes
        self._max_handles = state.settings.max_open_handles
        self._writes = SessionWrites(state.write_pool, self._writes_finished, state.write_buffer_bytes)
        self._answers: list[bytes] = []  # write answers held to leave together (see _writes_finished)
        self._answer_timer: asyncio.TimerHandle | None = None

    async def recv_packet(self) -> SSHPacket:
        assert self._reader is not None
        length = int.from_bytes(await self._reader.readexactly(4), "big")
        if length > self._max_packet:
            reason = (f"SFTP packet of {length} bytes refused: this server accepts at most "
                      f"{self._max_packet} bytes per packet")
            head = await self._reader.readexactly(min(length, 5))
            if len(head) == 5:
                pktid = int.from_bytes(head[1:5], "big")
                self.send_packet(FXP_STATUS, pktid, UInt32(pktid), UInt32(FX_BAD_MESSAGE), String(reason),
                                 String(DEFAULT_LANG))
            log.warning("sftp_packet_too_large", bytes=length, limit=self._max_packet)
            raise asyncssh.SFTPBadMessage(reason)
        packet = await self._reader.readexactly(length)
        self._touch()
        return _LenientPacket(packet)

    async def _process_packet(self, pkttype: int, pktid: int, packet: SSHPacket) -> None:
        if self._refusal is not None:
            if not self._refusal_told:
                self._refusal_told = True
                self._server.refusal(self._refusal)  # type: ignore[attr-defined]  # logs it and tells stderr
            self.send_packet(FXP_STATUS, pktid, UInt32(pktid), UInt32(FX_FAILURE), String(self._refusal),
                             String(DEFAULT_LANG))
            return
        if pkttype == FXP_WRITE:
            self._queue_write(pktid, packet)
            await self._writes.room()  # back-pressure: read no further while the disk is behind
            return
        if self._writes.pending:
            await self._writes.drained()  # every other request sees the session's writes done
        self._send_answers()  # held write answers go before this request's
        await super()._process_packet(pkttype, pktid, packet)

    def _queue_write(self, pktid: int, packet: SSHPacket) -> None:
        """Check one WRITE and queue it; answer at once only when it is refused."""
        file_obj = None
        try:
            try:
                handle, offset, data = _decode_write(packet.get_full_payload())
            except ValueError as exc:
                raise asyncssh.SFTPBadMessage(str(exc)) from None
            file_obj = self._file_handles.get(handle)
            if file_obj is None:
                raise asyncssh.SFTPInvalidHandle("Invalid file handle")
            at = self._server.accept_write(file_obj, offset, len(data))  # type: ignore[attr-defined]
        except Exception as exc:  # answered like asyncssh answers any request that raised
            if not isinstance(exc, (asyncssh.SFTPError, OSError)):
                log.exception("write_request_failed")
            if self._writes.pending:  # answered after the earlier writes (see rostergate.sftp.writes)
                self._writes.submit(Write(file_obj, pktid, 0, b"", error=exc, refused=True))
            else:
                self._send_answers()
                self.send_packet(FXP_STATUS, pktid, UInt32(pktid), _status_body(exc, self._version))
            return
        self._writes.submit(Write(file_obj, pktid, at, data))

    def _writes_finished(self, batch: list[Write]) -> None:
        """On the loop: account each finished write and queue its answer.

        While more writes of the session are pending (a pipelining client), answers are held
        until :data:`ANSWERS_HELD` of them are ready or :data:`ANSWER_DELAY` has passed, and leave
        in one channel write (one SSH packet, one ``send``); with nothing else pending (a client
        waiting for this answer, the end of an upload) they leave at once.
        """
        for write in batch:
            if not write.refused:
                self._server.write_done(write)  # type: ignore[attr-defined]
            body = _OK_STATUS if write.error is None else _status_body(write.error, self._version)
            self._answers.append(UInt32(len(body) + 5) + bytes((FXP_STATUS,)) + UInt32(write.pktid) + body)
        if self._writes.pending and len(self._answers) < ANSWERS_HELD:
            if self._answer_timer is None:
                self._answer_timer = asyncio.get_running_loop().call_later(ANSWER_DELAY, self._send_answers)
            return
        self._send_answers()

    def _send_answers(self) -> None:
        if self._answer_timer is not None:
            self._answer_timer.cancel()
            self._answer_timer = None
        if not self._answers:
            return
        answers, self._answers = self._answers, []
        writer = self._writer
        if writer is not None and not writer.channel.is_closing():
            writer.write(b"".join(answers))

    async def _cleanup(self, exc: Exception | None) -> None:
        await self._writes.drained()  # no descriptor is closed under a pending write
        self._send_answers()
        await super()._cleanup(exc)

    def _check_handles(self) -> None:
        if len(self._file_handles) + len(self._dir_handles) >= self._max_handles:
            raise self._server.refusal(  # type: ignore[attr-defined]
                f"too many open files: at most {self._max_handles} per session; close some first")

    async def _process_open(self, packet: SSHPacket) -> bytes:
        self._check_handles()
        return await SFTPServerHandler._process_open(self, packet)

    async def _process_opendir(self, packet: SSHPacket) -> bytes:
        self._check_handles()
        return await SFTPServerHandler._process_opendir(self, packet)

    async def _process_close(self, packet: SSHPacket) -> None:
        handle = packet.get_string()
        file_obj = self._file_handles.pop(handle, None)
        if file_obj is not None:
            self._server.client_close(file_obj)  # type: ignore[attr-defined]
            return
        if self._dir_handles.pop(handle, None) is not None:
            return
        raise asyncssh.SFTPInvalidHandle("Invalid file handle")

    async def _process_limits(self, packet: SSHPacket) -> SFTPLimits:
        payload = self._max_packet - 1024
        return SFTPLimits(self._max_packet, payload, payload, self._max_handles)

    _packet_handlers: dict[Any, Any] = {
        **{k: v for k, v in SFTPServerHandler._packet_handlers.items() if k not in _DROPPED_EXTENSIONS},
        FXP_OPEN: _process_open,
        FXP_OPENDIR: _process_opendir,
        FXP_CLOSE: _process_close,
        b"limits@openssh.com": _process_limits,
    }


class TenantSession(SSHServerStreamSession[bytes]):
    """An SSH session channel that offers the ``sftp`` subsystem only (no shell, exec or SCP)."""

    def __init__(self, state: ServerState, account: str, remote: str, touch: Callable[[], None]):
        super().__init__(None)
        self._state = state
        self._account = account
        self._remote = remote
        self._touch_conn = touch

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "sftp"

    def session_started(self) -> None:
        assert self._chan is not None and self._conn is not None
        # A server session's channel: an SSHServerChannel, or asyncssh's SSHLineEditorChannel proxy
        # forwarding every attribute to one (so no isinstance), though asyncssh types it SSHChannel.
        chan = cast("asyncssh.SSHServerChannel[bytes]", self._chan)
        if chan.get_subsystem() != "sftp":
            chan.close()
            return
        chan.set_encoding(None)
        self._encoding = None
        reader = SSHReader(self, chan)
        writer = SSHWriter(self, chan)
        self._conn.create_task(self._run(chan, reader, writer), reader.logger)

    async def _run(self, chan: asyncssh.SSHServerChannel[bytes], reader: SSHReader[bytes],
                   writer: SSHWriter[bytes]) -> None:
        state, account = self._state, self._account
        limit = state.settings.session_limit(account)
        refusal = None
        slot = None
        state.sessions[account] = state.sessions.get(account, 0) + 1  # first: open_usage reads it
        try:
            # The slot (counted across server processes) and, for the account's first session, the measure
            # of its home, side by side: one wait for the thread pool instead of two.
            slot, _ = await asyncio.gather(state.off_loop(state.slots.take, account, limit),
                                           state.open_usage(account))
            if slot is None:
                refusal = (f"too many sessions: account {account} may have at most {limit} SFTP session(s) open "
                           "at once; close another session and try again")
                log.warning("session_refused", account=account, remote=self._remote, limit=limit)
            server = TenantSFTPServer(chan, state, account, self._remote)
            handler = TenantSFTPHandler(server, reader, writer, 3, state, self._touch_conn, refusal)
            await handler.run()
        finally:
            if slot is not None:
                await state.off_loop(state.slots.give_back, slot)
            left = state.sessions.get(account, 1) - 1
            if left > 0:
                state.sessions[account] = left
            else:
                state.sessions.pop(account, None)
            await asyncio.sleep(0)
