"""Per-account SFTP session slots, counted in the state store so the limit holds across server processes.

Each open SFTP session is a row of ``sftp_sessions`` (store migration 8) carrying the
pid of the process serving it. :meth:`SessionSlots.take` counts the account's rows and
adds one in one statement (one write transaction), so two processes cannot both take the
last slot. Rows of a process that is gone are removed: :meth:`SessionSlots.forget_process`
(by the daemon when a server process ends) and :meth:`SessionSlots.clear` (at the
daemon's start, when no server process runs yet). Both also remove the process's rows of
``sftp_connections``, the connections per source the defender counts the same way
(:mod:`rostergate.sftp.defender`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time


class SessionSlots:
    """Take and give back session slots; every method is synchronous (small indexed transactions)."""

    def __init__(self, conn: sqlite3.Connection, pid: int | None = None):
        self._db = conn
        self._pid = os.getpid() if pid is None else pid
        self._lock = threading.Lock()

    def take(self, account: str, limit: int) -> int | None:
        """A slot for a new session of ``account``: its id, or ``None`` when ``limit`` sessions are open."""
        with self._lock:  # one statement, so one write transaction: the count and the row together
            cursor = self._db.execute(
                "INSERT INTO sftp_sessions (account, pid, opened_at) SELECT ?, ?, ? "
                "WHERE (SELECT COUNT(*) FROM sftp_sessions WHERE account = ?) < ?",
                (account, self._pid, time.time(), account, limit))
        return cursor.lastrowid if cursor.rowcount == 1 else None

    def give_back(self, slot: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sftp_sessions WHERE id = ?", (slot,))

    def open_sessions(self, account: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM sftp_sessions WHERE account = ?",
                                        (account,)).fetchone()[0])

    def forget_process(self, pid: int) -> int:
        """Remove the session slots and connection rows of process ``pid`` (which has ended); returns
        how many sessions."""
        with self._lock:
            self._db.execute("DELETE FROM sftp_connections WHERE pid = ?", (pid,))
            return self._db.execute("DELETE FROM sftp_sessions WHERE pid = ?", (pid,)).rowcount

    def clear(self) -> int:
        """Remove every slot and connection row (at start, before any server process serves); returns
        how many sessions."""
        with self._lock:
            self._db.execute("DELETE FROM sftp_connections")
            return self._db.execute("DELETE FROM sftp_sessions").rowcount
