"""Upload writes off the event loop: in order, bounded in memory, answered once written.

One event loop serves every SFTP session, so a disk write done on it stops all
of them (and was a third of its time during a large upload). A session's
``SSH_FXP_WRITE`` requests are therefore handed to :class:`SessionWrites`, which
writes them with ``os.pwrite`` (``os.write`` for an append handle: Linux's
``pwrite`` ignores the offset of an ``O_APPEND`` descriptor) on a small thread
pool shared by all sessions, while the loop goes on decrypting the next ones.

* **Order**: one session's writes are done one after the other in the order they
  arrived, whatever their handles and offsets (a pipelined client may send them
  out of order; the last write to a byte wins, as it would on the loop).
* **Answers**: each WRITE is answered only after its bytes were handed to the
  kernel, with its own status: an ``ENOSPC`` or a quota error reaches the very
  request that failed. Answers go out in the order of the requests (a write
  refused at once is queued as already failed behind the pending ones): OpenSSH's
  ``sftp`` keeps only the status of the last answer it drains, so an error
  answered before earlier writes' OKs would be forgotten and the upload reported
  as done. Answers finished together go out in one channel write.
* **Back-pressure**: at most :data:`MAX_PENDING_BYTES` of a session's writes wait
  for the disk (always at least one write). Beyond that the session stops reading
  its channel until the disk catches up, so asyncssh stops granting window and a
  slow disk slows the client instead of growing a queue. A session holds at most
  its SSH channel window plus this bound.
* **Barrier**: every other request of the session (CLOSE, FSTAT, READ, SETSTAT,
  FSYNC, ...) waits until the session's writes are done, so it sees them exactly
  as it would have without the queue, and a handle is closed only after its last
  write (a descriptor is never closed under a pending write, also when the
  connection drops).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import asyncssh

MAX_PENDING_BYTES = 4 * 1024 * 1024  # per session, waiting for the disk
WRITE_THREADS = 4  # shared by all sessions: disk writes going on at once
APPEND = -1  # Write.offset of a write on an O_APPEND handle


def reason(exc: Exception) -> str:
    """What went wrong, for the client and the log: an SFTP error's reason, an OS error's text."""
    if isinstance(exc, asyncssh.SFTPError):
        return exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


@dataclass(eq=False)
class Write:
    """One accepted ``SSH_FXP_WRITE``: where its bytes go and, once done, how it went."""

    file: Any  # the session's open file (rostergate.sftp.files.OpenFile)
    pktid: int
    offset: int  # APPEND for an O_APPEND handle
    data: bytes | memoryview
    error: Exception | None = None  # set when it failed (or, with ``refused``, before it was queued)
    refused: bool = False  # refused on the loop (a limit): nothing to write, only the answer to send

    def perform(self) -> None:
        """Write every byte (looping over short writes); on the calling (worker) thread."""
        if self.refused:
            return
        fd = self.file.fileno()
        view = memoryview(self.data)
        offset = self.offset
        while view:
            done = os.write(fd, view) if offset == APPEND else os.pwrite(fd, view, offset)
            if done <= 0:
                raise OSError(f"wrote nothing of {len(view)} bytes")
            view = view[done:]
            if offset != APPEND:
                offset += done


class SessionWrites:
    """The writes of one SFTP session waiting for (or at) the disk; used from the event loop only,
    except :meth:`_run`, which the pool runs.

    ``finished(batch)`` is called on the loop with the writes done together, in order, each
    with its ``error`` set when it failed.
    """

    def __init__(self, pool: Executor, finished: Callable[[list[Write]], None],
                 limit_bytes: int = MAX_PENDING_BYTES):
        self._pool = pool
        self._finished = finished
        self._limit = limit_bytes
        self._loop = asyncio.get_running_loop()
        self._queue: deque[Write] = deque()  # shared with the worker thread, under _lock
        self._lock = threading.Lock()
        self._running = False  # a pool job is draining the queue (under _lock)
        self.pending = 0  # writes submitted and not finished (loop side)
        self.pending_bytes = 0
        self._waiters: list[asyncio.Future[None]] = []

    def submit(self, write: Write) -> None:
        """Queue ``write`` behind the session's earlier ones (never blocks)."""
        self.pending += 1
        self.pending_bytes += len(write.data)
        with self._lock:
            self._queue.append(write)
            if self._running:
                return
            self._running = True
        try:
            self._pool.submit(self._run)
        except RuntimeError as exc:  # the pool is shut down (the daemon stops): fail what waits
            with self._lock:
                lost = list(self._queue)
                self._queue.clear()
                self._running = False
            for one in lost:
                one.error = OSError(f"the server is stopping ({exc})")
            self._finish(lost)

    async def room(self) -> None:
        """Return once fewer than the bound's bytes wait for the disk (back-pressure)."""
        while self.pending_bytes >= self._limit:
            await self._wait()

    async def drained(self) -> None:
        """Return once every submitted write is finished and answered."""
        while self.pending:
            await self._wait()

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def _run(self) -> None:
        """Worker thread: write what is queued, in order, until the queue is empty."""
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                batch = list(self._queue)
                self._queue.clear()
            for write in batch:
                try:
                    write.perform()
                except OSError as exc:
                    write.error = exc
            try:
                self._loop.call_soon_threadsafe(self._finish, batch)
            except RuntimeError:  # the loop is closed: nobody is left to answer
                return

    def _finish(self, batch: list[Write]) -> None:
        """On the loop: account and answer ``batch``, then wake whoever waits for room or a drain."""
        self.pending -= len(batch)
        self.pending_bytes -= sum(len(write.data) for write in batch)
        try:
            self._finished(batch)
        finally:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
