"""Looking at the daemon from the outside: its processes through /proc (Linux only), its runs
straight from its state store (cheap enough to poll, unlike the CLI).

The daemon's workers are its children (``multiprocessing`` spawn), found from
``/proc/<pid>/task/*/children``; a worker's command line holds ``spawn_main``
(the other child, ``multiprocessing``'s resource tracker, does not).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

MIB = 1 << 20


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (empty when it is gone)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of ``pid`` (bounded: at most 1,000)."""
    found: list[int] = []
    todo = children(pid)
    while todo and len(found) < 1_000:
        child = todo.pop()
        found.append(child)
        todo += children(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_pids(daemon_pid: int) -> list[int]:
    """The daemon's worker processes (spawned by multiprocessing)."""
    return [pid for pid in children(daemon_pid) if "spawn_main" in cmdline(pid)]


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def peak_rss(pid: int) -> int:
    """VmHWM (peak resident set) of ``pid`` in bytes; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def runs_fast(data_dir: Path, account: str) -> list[dict]:
    """The account's runs (id, upload_name, status, message) in the order received, read-only."""
    with sqlite3.connect(f"file:{data_dir / 'rostergate.db'}?mode=ro", uri=True, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT id, upload_name, status, message FROM runs WHERE account = ? "
                            "ORDER BY received_at, rowid", (account,)).fetchall()
    return [dict(row) for row in rows]
