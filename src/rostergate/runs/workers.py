"""The worker processes that do a run's CPU work, and what happens when one is lost.

:class:`WorkerPool` owns ``processes`` worker slots. Each slot is its own
one-process :class:`~concurrent.futures.ProcessPoolExecutor` (spawn context), so a
dead worker breaks only the call that was running in it: calls waiting for a
free slot never see a ``BrokenProcessPool`` that was not theirs. The one
awaitable entry point is :meth:`WorkerPool.run`; it raises :class:`WorkerFailure`
when the worker died (killed, crashed), ran out of memory (``MemoryError`` under
its ``RLIMIT_AS``) or took longer than ``max_run_seconds``. In every one of these
cases the slot's process is gone and the next call starts a fresh one.

Every worker process, in its initializer:

* asks the kernel for ``SIGKILL`` when its parent dies (``PR_SET_PDEATHSIG``), then
  checks that its parent is still the daemon (closing the race with a parent that
  died before the ``prctl``): a ``kill -9`` of the daemon leaves no worker behind;
* caps its address space at ``max_memory_mb`` (``RLIMIT_AS``, soft and hard);
* has Arrow allocate from jemalloc, which gives freed memory back to the system.

The parent-death signal fires when the *thread* that started the worker ends, so
:meth:`WorkerPool.run` and :meth:`WorkerPool.warm` must be awaited on a long-lived event
loop thread (the daemon's main thread): workers start there, in ``warm`` (the daemon
starts them all when it starts, so the first run waits for none) or in ``run`` (a worker
lost since is replaced by the call that needs it).
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol, TypeVar, TypeVarTuple

import structlog

from rostergate import logs
from rostergate.config import WorkerSettings
from rostergate.errors import WorkerFailure
from rostergate.procs import die_with_parent

log = structlog.get_logger("rostergate.workers")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# Starting a worker (spawn, imports of pandas and pyarrow) is not part of a run's time limit,
# but a start that takes this long is a failure in itself.
START_SECONDS = 120.0
# Waiting for an executor to notice its killed process and wind down.
_REAP_SECONDS = 30.0


class Workers(Protocol):
    """Something that runs a picklable function with its arguments away from the event loop."""

    async def run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T: ...


class ExecutorWorkers:
    """:class:`Workers` over a plain executor (threads in tests): no limits, no replacement."""

    def __init__(self, executor: Executor):
        self.executor = executor

    async def run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


def initialize_worker(parent_pid: int, max_memory_bytes: int | None) -> None:
    """Runs first in every worker process: die with the daemon, cap the address space, log as the daemon does."""
    die_with_parent(parent_pid)
    # Arrow's memory from jemalloc rather than its default mimalloc, which keeps the pages a run
    # freed: a million-student run peaks near 1.9 GiB instead of 2.5 (bench/bench_scale.py).
    # Without "retain", jemalloc unmaps what it frees, so the address space (RLIMIT_AS counts
    # it) peaks lower than mimalloc's too: 3.9 GiB there, against 4.5 and 6.4 with "retain".
    # Read when pyarrow first allocates, which is after this (an operator's setting wins).
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    os.environ.setdefault("JE_ARROW_MALLOC_CONF", "retain:false")
    if max_memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (max_memory_bytes, max_memory_bytes))
    logs.configure()  # the daemon's stderr: a warning from a library here is a JSON line there too


def _call(fn: Callable[[*Ts], T], args: tuple[*Ts]) -> T:
    """Runs ``fn(*args)`` in the worker; a thread that cannot start under the memory cap is out of memory."""
    try:
        return fn(*args)
    except RuntimeError as exc:
        if "can't start new thread" in str(exc):
            raise MemoryError("no memory left to start a thread") from exc
        raise


def _ready(preload: tuple[str, ...]) -> int:
    """The first call in a new worker: import the heavy modules up front, and call each
    ``module:function`` named (a warm-up run); returns the worker's pid."""
    for name in preload:
        module, _, function = name.partition(":")
        imported = importlib.import_module(module)
        if function:
            getattr(imported, function)()
    return os.getpid()


def describe_exit(exitcode: int | None) -> tuple[str, str | None]:
    """How a worker process ended, for people, and the signal's name when a signal ended it."""
    if exitcode is None:
        return "the worker process stopped unexpectedly", None
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if name == "SIGKILL":
            return "the worker process was killed (SIGKILL: the system's out-of-memory killer or an operator)", name
        if name == "SIGABRT":
            return ("the worker process aborted (SIGABRT: a native library gave up, most often for lack of "
                    "memory)"), name
        return f"the worker process crashed ({name})", name
    return f"the worker process exited unexpectedly (exit code {exitcode})", None


class _Slot:
    """One worker process behind a one-process executor; started on first use."""

    def __init__(self, number: int):
        self.number = number
        self.executor: ProcessPoolExecutor | None = None
        self.process: multiprocessing.process.BaseProcess | None = None
        self.pid: int | None = None

    async def call(self, pool: WorkerPool, fn: Callable[[*Ts], T], args: tuple[*Ts]) -> T:
        waiter = await self._submit(pool, fn, args)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), pool.settings.max_run_seconds)
        except TimeoutError:
            await self.discard()
            raise WorkerFailure(
                "timeout",
                f"the worker took longer than {pool.settings.max_run_seconds:g} s "
                "(server.workers.max_run_seconds) and was stopped",
            ) from None
        except BrokenProcessPool:
            detail, name = describe_exit(await self.discard())
            raise WorkerFailure("died", detail + pool.memory_note(), name) from None
        except MemoryError:
            await self.discard()  # its heap may be in any state: start afresh
            raise WorkerFailure("memory", pool.memory_detail()) from None
        except asyncio.CancelledError:
            self.abandon()  # nobody will read the result: free the CPU and the memory now
            raise

    async def start(self, pool: WorkerPool) -> None:
        """A running worker in this slot: the one there, or a new one (replacing one that died while idle)."""
        if self.process is not None and self.process.exitcode is not None:
            log.warning("worker_lost_while_idle", slot=self.number, exit=describe_exit(await self.discard())[0])
        await self._start(pool)

    async def _submit(self, pool: WorkerPool, fn: Callable[[*Ts], T], args: tuple[*Ts]) -> asyncio.Future[T]:
        """Submit to this slot's worker, first replacing one that died while idle (not the caller's fault)."""
        await self.start(pool)
        assert self.executor is not None
        try:
            future = self.executor.submit(_call, fn, args)
        except BrokenProcessPool:
            await self.discard()
            await self._start(pool)
            assert self.executor is not None
            future = self.executor.submit(_call, fn, args)
        waiter = asyncio.wrap_future(future)
        waiter.add_done_callback(_consume)
        return waiter

    async def _start(self, pool: WorkerPool) -> None:
        if self.executor is not None:
            return
        self.executor = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=initialize_worker, initargs=(os.getpid(), pool.max_memory_bytes),
        )
        waiter = asyncio.wrap_future(self.executor.submit(_ready, pool.preload))
        waiter.add_done_callback(_consume)
        try:
            self.pid = await asyncio.wait_for(asyncio.shield(waiter), START_SECONDS)
        except asyncio.CancelledError:
            self.abandon()
            raise
        except MemoryError:
            await self.discard()
            raise WorkerFailure("memory", pool.memory_detail()) from None
        except (TimeoutError, BrokenProcessPool) as exc:
            detail, name = describe_exit(await self.discard())
            if isinstance(exc, TimeoutError):
                detail, name = f"the worker process did not start within {START_SECONDS:g} s", None
            raise WorkerFailure("died", detail + " while starting" + pool.memory_note(), name) from None
        except BaseException:
            await self.discard()
            raise
        # The executor's one process, held to read its exit code and to kill it. The attribute
        # is private: without it only the exit code is lost (the pid still kills the process).
        self.process = getattr(self.executor, "_processes", {}).get(self.pid)
        log.info("worker_started", slot=self.number, pid=self.pid)

    def kill(self) -> None:
        """SIGKILL this slot's process if it is still running."""
        if self.process is not None:
            if self.process.exitcode is None:
                self.process.kill()
        elif self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def abandon(self) -> None:
        """Kill the process and let its executor wind down in the background."""
        executor = self.executor
        self.kill()
        self.executor, self.process, self.pid = None, None, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def discard(self) -> int | None:
        """Kill the process and wait (bounded) for its executor to wind down; returns its exit code."""
        executor, process = self.executor, self.process
        self.kill()
        self.executor, self.process, self.pid = None, None, None
        if executor is not None:
            shutdown = asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
            try:
                await asyncio.wait_for(shutdown, _REAP_SECONDS)
            except TimeoutError:
                log.warning("worker_not_reaped", slot=self.number)
        return process.exitcode if process is not None else None


def _consume(future: asyncio.Future[T]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" noise


class WorkerPool:
    """``settings.processes`` worker processes with limits; lost ones are replaced on the next call."""

    def __init__(self, settings: WorkerSettings, preload: tuple[str, ...] = ()):
        self.settings = settings
        self.preload = preload
        self._slots = [_Slot(n) for n in range(settings.processes)]
        self._idle: asyncio.Queue[_Slot] | None = None
        self._closed = False

    @property
    def max_memory_bytes(self) -> int:
        return self.settings.max_memory_mb * 1024 * 1024

    def memory_detail(self) -> str:
        return (f"the worker ran out of memory (its limit is {self.settings.max_memory_mb} MB, "
                "server.workers.max_memory_mb)")

    def memory_note(self) -> str:
        """Said of a worker that died: its memory cap, a frequent cause that its exit alone does not show."""
        return f"; its memory limit is {self.settings.max_memory_mb} MB (server.workers.max_memory_mb)"

    @property
    def pids(self) -> list[int]:
        """The running workers' process ids."""
        return [slot.pid for slot in self._slots if slot.pid is not None]

    def _queue(self) -> asyncio.Queue[_Slot]:
        """The idle slots (made on the event loop that first uses the pool)."""
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        if self._idle is None:
            self._idle = asyncio.Queue()
            for slot in self._slots:
                self._idle.put_nowait(slot)
        return self._idle

    async def run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """``fn(*args)`` in a free worker; waits for one when all are busy (first come, first served).

        Raises :class:`WorkerFailure` when the worker is lost (the slot gets a new
        process on its next call); any other exception of ``fn`` is raised as is.
        """
        idle = self._queue()
        slot = await idle.get()
        try:
            return await slot.call(self, fn, args)
        finally:
            idle.put_nowait(slot)

    async def warm(self) -> None:
        """Start every worker now, rather than for the first run that needs it.

        Each slot is taken while its worker starts (spawn, the preload imports), so a run
        that comes meanwhile waits for the first worker that is ready, never for a second
        start. A worker that cannot start is logged; the next run that needs it tries again.
        Await it on the long-lived event loop thread, as :meth:`run` (the parent-death signal).
        """
        idle = self._queue()

        async def start_one() -> None:
            slot = await idle.get()
            try:
                await slot.start(self)
            except WorkerFailure as failure:
                log.warning("worker_not_started", slot=slot.number, detail=failure.detail)
            except Exception as exc:  # noqa: BLE001 - e.g. a preload import that fails: the run that needs it says so
                log.error("worker_not_started", slot=slot.number, error=type(exc).__name__)
            finally:
                idle.put_nowait(slot)

        await asyncio.gather(*(start_one() for _ in self._slots))
        log.info("workers_ready", processes=len(self.pids))

    async def close(self) -> None:
        """Stop every worker now (running calls are abandoned) and wait for them to end."""
        self._closed = True
        await asyncio.gather(*(slot.discard() for slot in self._slots))
