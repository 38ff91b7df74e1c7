"""WorkerPool: a lost worker fails only its own call and is replaced; limits; dying with the parent.

The functions run in the workers are defined at module level (spawned workers
import them by name) and keep their imports light, so a worker starts in well
under a second. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from rostergate.config import WorkerSettings
from rostergate.errors import WorkerFailure
from rostergate.runs.workers import WorkerPool, describe_exit, initialize_worker
from tests import procs

_PR_GET_PDEATHSIG = 2


# -- run inside the workers ---------------------------------------------------------------
def pid_after(marker: str, seconds: float) -> int:
    """Write this worker's pid into ``marker``, sleep, return the pid."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def own_pid() -> int:
    return os.getpid()


def raise_memory_error() -> None:
    raise MemoryError("pretend")


def allocate(mib: int) -> int:
    block = bytearray(mib << 20)
    return len(block)


def arrow_allocate(mib: int) -> tuple[str, int]:
    """The worker's Arrow memory pool, and the size of an Arrow buffer of ``mib`` MiB allocated from it."""
    import pyarrow as pa  # here, not at the top: workers that never need pyarrow start without it

    return pa.default_memory_pool().backend_name, pa.allocate_buffer(mib << 20).size


def raise_value_error() -> None:
    raise ValueError("the function's own error")


def limits_seen() -> tuple[tuple[int, int], int, int]:
    """RLIMIT_AS, the parent-death signal and the parent pid, as the worker sees them."""
    sig = ctypes.c_int(0)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(_PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0) == 0
    return resource.getrlimit(resource.RLIMIT_AS), sig.value, os.getppid()


# -- helpers --------------------------------------------------------------------------------
def _pool(processes: int = 1, max_memory_mb: int = 4096, max_run_seconds: float = 60.0) -> WorkerPool:
    return WorkerPool(WorkerSettings(processes=processes, max_memory_mb=max_memory_mb,
                                     max_run_seconds=max_run_seconds))


async def _wait_for_file(path: Path, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path.name} was not written within {timeout}s")


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


# -- tests --------------------------------------------------------------------------------
def test_a_killed_worker_fails_only_its_own_call_and_is_replaced(tmp_path):
    async def scenario():
        pool = _pool(processes=2)
        try:
            first = asyncio.create_task(pool.run(pid_after, str(tmp_path / "a"), 30))
            second = asyncio.create_task(pool.run(pid_after, str(tmp_path / "b"), 1.5))
            victim = await _wait_for_file(tmp_path / "a")
            survivor = await _wait_for_file(tmp_path / "b")
            assert victim != survivor
            procs.kill(victim)
            with pytest.raises(WorkerFailure) as lost:
                await first
            assert (lost.value.kind, lost.value.signal) == ("died", "SIGKILL")
            assert "killed" in lost.value.detail and "max_memory_mb" in lost.value.detail
            assert await second == survivor  # the other call never noticed
            assert victim not in pool.pids and survivor in pool.pids
            after = set(await asyncio.gather(pool.run(pid_after, str(tmp_path / "c"), 0.5),
                                             pool.run(pid_after, str(tmp_path / "d"), 0.5)))
            assert survivor in after and victim not in after and len(after) == 2
            assert not procs.alive(victim)
        finally:
            await pool.close()

    _run(scenario())


def test_a_call_waiting_for_the_slot_of_a_killed_worker_runs_in_its_replacement(tmp_path):
    async def scenario():
        pool = _pool(processes=1)
        try:
            running = asyncio.create_task(pool.run(pid_after, str(tmp_path / "a"), 30))
            victim = await _wait_for_file(tmp_path / "a")
            waiting = asyncio.create_task(pool.run(own_pid))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            procs.kill(victim)
            with pytest.raises(WorkerFailure):
                await running
            replacement = await waiting
            assert replacement != victim and pool.pids == [replacement]
        finally:
            await pool.close()

    _run(scenario())


def test_a_worker_killed_while_idle_is_replaced_without_failing_the_next_call():
    async def scenario():
        pool = _pool()
        try:
            first = await pool.run(own_pid)
            procs.kill(first)
            assert procs.wait_for(lambda: not procs.alive(first), timeout=10)
            second = await pool.run(own_pid)
            assert second != first
        finally:
            await pool.close()

    _run(scenario())


def test_the_time_limit_stops_the_worker(tmp_path):
    async def scenario():
        pool = _pool(max_run_seconds=1.0)
        try:
            started = time.monotonic()
            with pytest.raises(WorkerFailure) as lost:
                await pool.run(pid_after, str(tmp_path / "slow"), 60)
            assert time.monotonic() - started < 15
            assert lost.value.kind == "timeout" and "max_run_seconds" in lost.value.detail
            slow = int((tmp_path / "slow").read_text())
            assert procs.wait_for(lambda: not procs.alive(slow), timeout=10)
            assert await pool.run(own_pid) != slow
        finally:
            await pool.close()

    _run(scenario())


def test_memory_error_is_a_lost_worker_and_the_worker_is_replaced():
    async def scenario():
        pool = _pool(max_memory_mb=1024)
        try:
            before = await pool.run(own_pid)
            with pytest.raises(WorkerFailure) as lost:
                await pool.run(raise_memory_error)
            assert lost.value.kind == "memory" and "1024 MB" in lost.value.detail
            after = await pool.run(own_pid)
            assert after != before  # its heap may be in any state: a fresh process
            with pytest.raises(WorkerFailure) as real:  # a real allocation past RLIMIT_AS
                await pool.run(allocate, 2048)
            assert real.value.kind == "memory"
            assert await pool.run(allocate, 16) == 16 << 20
        finally:
            await pool.close()

    _run(scenario())


def test_arrow_allocates_from_jemalloc_and_runs_out_of_memory_cleanly_under_the_cap():
    """jemalloc gives freed pages back (a run's peak memory, bench_scale.py); under RLIMIT_AS an
    Arrow allocation past the cap is a lost worker of kind "memory", not a crash, and the
    replacement allocates from jemalloc again."""
    async def scenario():
        pool = _pool(max_memory_mb=1024)
        try:
            assert await pool.run(arrow_allocate, 16) == ("jemalloc", 16 << 20)
            with pytest.raises(WorkerFailure) as lost:
                await pool.run(arrow_allocate, 2048)
            assert lost.value.kind == "memory"
            assert await pool.run(arrow_allocate, 16) == ("jemalloc", 16 << 20)
        finally:
            await pool.close()

    _run(scenario())


def test_the_function_s_own_errors_pass_through_and_keep_the_worker():
    async def scenario():
        pool = _pool()
        try:
            before = await pool.run(own_pid)
            with pytest.raises(ValueError, match="own error"):
                await pool.run(raise_value_error)
            assert await pool.run(own_pid) == before
        finally:
            await pool.close()

    _run(scenario())


def test_the_initializer_sets_the_memory_cap_and_the_parent_death_signal():
    async def scenario():
        pool = _pool(max_memory_mb=3000)
        try:
            rlimit, death_signal, parent = await pool.run(limits_seen)
        finally:
            await pool.close()
        assert rlimit == (3000 << 20, 3000 << 20)
        assert death_signal == signal.SIGKILL
        assert parent == os.getpid()

    _run(scenario())


def test_the_initializer_exits_when_its_parent_is_already_gone():
    """The daemon died before the prctl took effect: the worker's parent is no longer the pid it was given."""
    context = multiprocessing.get_context("spawn")
    orphan = context.Process(target=initialize_worker, args=(os.getpid() + 1_000_000, None))
    orphan.start()
    orphan.join(30)
    assert orphan.exitcode == 1
    adopted = context.Process(target=initialize_worker, args=(os.getpid(), 2048 << 20))
    adopted.start()
    adopted.join(30)
    assert adopted.exitcode == 0


_PARENT = """
import asyncio, os, sys, time
from rostergate.config import WorkerSettings
from rostergate.runs.workers import WorkerPool

async def main():
    pool = WorkerPool(WorkerSettings(processes=1, max_memory_mb=2048, max_run_seconds=60))
    await pool.run(os.getpid)
    print("WORKER", pool.pids[0], flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_a_worker_dies_with_its_parent(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        lines = (parent.stdout.readline() for _ in range(50))  # the pool's own log lines come first
        worker = int(next(line for line in lines if line.startswith("WORKER")).split()[1])
        assert procs.alive(worker) and worker in procs.children(parent.pid)
        parent.kill()
        parent.wait(10)
        assert procs.wait_for(lambda: not procs.alive(worker), timeout=10), "the worker outlived its parent"
    finally:
        parent.kill()
        parent.wait(10)
        parent.stdout.close()


def test_a_closed_pool_refuses_calls_and_leaves_no_worker():
    async def scenario():
        pool = _pool()
        pid = await pool.run(own_pid)
        await pool.close()
        assert procs.wait_for(lambda: not procs.alive(pid), timeout=10)
        with pytest.raises(RuntimeError):
            await pool.run(own_pid)

    _run(scenario())


@pytest.mark.parametrize("exitcode, words, name", [
    (-signal.SIGKILL, "killed", "SIGKILL"),
    (-signal.SIGABRT, "aborted", "SIGABRT"),
    (-signal.SIGSEGV, "crashed (SIGSEGV)", "SIGSEGV"),
    (3, "exit code 3", None),
    (None, "stopped unexpectedly", None),
])
def test_describe_exit(exitcode, words, name):
    detail, signal_name = describe_exit(exitcode)
    assert words in detail and signal_name == name


def test_warm_starts_every_worker_before_any_call_and_calls_use_them():
    async def scenario():
        pool = WorkerPool(WorkerSettings(processes=2, max_memory_mb=4096, max_run_seconds=60.0),
                          preload=("json",))
        try:
            assert pool.pids == []
            await pool.warm()
            warm = set(pool.pids)
            assert len(warm) == 2 and all(procs.alive(pid) for pid in warm)
            used = set(await asyncio.gather(pool.run(pid_after, os.devnull, 0.3), pool.run(pid_after, os.devnull, 0.3)))
            assert used == warm and set(pool.pids) == warm  # no worker was started for the calls
        finally:
            await pool.close()

    _run(scenario())


def test_a_worker_that_cannot_start_is_logged_and_started_again_by_the_call_that_needs_it():
    async def scenario():
        pool = WorkerPool(WorkerSettings(processes=1, max_memory_mb=4096, max_run_seconds=60.0),
                          preload=("rostergate_no_such_module",))
        try:
            with capture_logs() as logs:
                await pool.warm()  # never raises: the daemon starts anyway
            assert pool.pids == []
            assert any(e["event"] == "worker_not_started" and e["error"] == "ModuleNotFoundError" for e in logs)
            with pytest.raises(ModuleNotFoundError):
                await pool.run(own_pid)
        finally:
            await pool.close()

    _run(scenario())
