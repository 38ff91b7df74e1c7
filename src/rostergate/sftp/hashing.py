"""Password checks off the event loop, a few at a time, the most trusted first.

argon2id costs tens of milliseconds of CPU and 64 MiB per check. Run on the
event loop it stalls every session; run in asyncio's default thread pool it
queues first come, first served, so 60 spraying sources put every district's
login behind 180 hopeless checks (0.3 s became 5.6 s). :class:`PasswordChecks`
runs them on its own ``workers`` threads and takes them from a priority queue.
The server sizes it so that the threads hashing at once match the cores: one
argon2id check already runs its 4 lanes on 4 threads, so
``workers = max(1, cores // lanes)`` (1 on a 2- or 4-core machine); more would
only take CPU from the event loop and memory (64 MiB a check) without checking
faster. The queue's order:
:meth:`rostergate.sftp.defender.Defender.auth_priority` puts a source and account
that logged in before first, clean ones next, and those with recent failures
behind them (equal priorities keep their order). Each failed login re-ranks the
waiting checks (:meth:`PasswordChecks.reorder`), so the first failures of a spray
push the rest of it, queued while its sources were still clean, behind everyone
else. A check whose client gave up while it waited is dropped without hashing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
Key = tuple[str, str]  # (source address, account name)


class PasswordChecks:
    """A small dedicated thread pool with a priority queue (lower priority values run first)."""

    def __init__(self, workers: int | None = None, lanes: int = 1):
        """``workers`` threads (default: the cores divided by the ``lanes`` each check uses)."""
        self.workers = max(1, workers or (os.cpu_count() or 1) // max(1, lanes))
        self._queue: list[tuple[int, int, Key, Callable[[], Any], Future[Any]]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"rostergate-auth-{i}", daemon=True)
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()

    async def run(self, priority: int, check: Callable[[], T], key: Key = ("", "")) -> T:
        """Run ``check`` on a worker when no check of lower ``priority`` waits; its result."""
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("password checks are closed")
            heapq.heappush(self._queue, (priority, next(self._order), key, check, future))
            self._ready.notify()
        return await asyncio.wrap_future(future)

    def reorder(self, priority_of: Callable[[str, str], int]) -> None:
        """Rank the waiting checks again with ``priority_of(source, account)`` (call it from the
        thread that owns what it reads, the event loop)."""
        with self._ready:
            waiting = [(order, key, check, future) for _, order, key, check, future in self._queue
                       if not future.cancelled()]
            # once per (source, account): each is a store read, and a spray queues many checks per source
            priority = {key: priority_of(*key) for _, key, _, _ in waiting}
            self._queue = [(priority[key], order, key, check, future) for order, key, check, future in waiting]
            heapq.heapify(self._queue)

    def waiting(self) -> int:
        with self._ready:
            return len(self._queue)

    def close(self) -> None:
        """Stop the workers once the queue is empty (they are daemon threads: exit never waits)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                _, _, _, check, future = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():  # the client went away while it waited
                continue
            try:
                future.set_result(check())
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                future.set_exception(exc)
