"""Brute-force defence, modelled on SFTPGo's defender and OpenSSH's PerSourcePenalties.

Every failed login adds to a score kept per source address and per account name
(``score_known_user`` for an existing account, ``score_unknown_user`` for a name
that does not exist, ``score_limit_exceeded`` when a connection uses up its
``max_auth_attempts``). Scores older than ``observation_seconds`` drop out.

* A source whose score reaches ``threshold`` is banned for ``ban_seconds``; each
  further ban of the same source lasts ``ban_increment_percent`` longer than the
  one before. Banned sources are disconnected as soon as they connect.
* An account name whose score reaches ``account_threshold`` (guessing spread over
  many sources) has its **password** logins refused for ``ban_seconds``; its
  public keys keep working, so the tenant is not locked out by an attacker.
* Sources on ``safe_list`` are never banned.
* :meth:`Defender.auth_priority` orders password checks (argon2 work, see
  :mod:`rostergate.sftp.hashing`): an account logging in from a source it
  logged in from before (within ``observation_seconds``) goes first, then clean
  sources and names, then those with recent failures, by their scores. A
  password spray therefore queues behind the districts that log in every day.

Scores, bans and the connections open per source are kept in the state store (tables
``defender_entries``, ``defender_events``, store migration 8, and ``sftp_connections``,
migration 10), so every SFTP server process sees the same bans and counts, and a ban outlives
a restart; times there are wall-clock (``time.time``). ``max_connections_per_source`` counts
the connections of every server process: each open connection is a row carrying the pid of
the process serving it, removed when it closes, or with every row of that process when the
process ends (:meth:`rostergate.sftp.slots.SessionSlots.forget_process`, by the daemon). Each
table is bounded (``max_entries``, oldest unbanned entries dropped first). Without a data
directory (unit tests) an in-memory database with the same schema is used. What stays in
the process's memory: the trusted (source, account) pairs that order password checks.

Threads: the reads (:meth:`Defender.ban_left`, :meth:`Defender.account_locked`,
:meth:`Defender.auth_priority`) are single indexed queries on a connection of their own,
cheap enough for the event loop, and WAL readers never wait for a writer. Every write
(a failed login, a connection opened or closed) is a write transaction that may wait for
another process's, so the SFTP server runs them on the defender's own writer thread
(:meth:`Defender.write`), never on the event loop. Nothing here ever sees a password.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ipaddress
import os
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog

from rostergate import metrics, store
from rostergate.sftp.settings import DefenderSettings

log = structlog.get_logger("rostergate.sftp.defender")


SOURCE, ACCOUNT = "source", "account"
T = TypeVar("T")


class Defender:
    """Scores, bans and connection counts (module doc): reads are synchronous and cheap; writes
    are small write transactions, run through :meth:`write` by the server."""

    def __init__(self, settings: DefenderSettings, clock: Callable[[], float] = time.time,
                 data_dir: Path | None = None, pid: int | None = None):
        self.settings = settings
        self._clock = clock
        if data_dir is None:  # one private in-memory store: the same connection reads and writes
            self._db = self._reader = store.connect_memory()
            self._lock = self._read_lock = threading.Lock()
        else:  # scores and counts may lose their last changes on a power loss: no fsync per commit
            self._db = store.connect(data_dir, durable=False)
            self._reader = store.connect(data_dir, durable=False)
            self._lock, self._read_lock = threading.Lock(), threading.Lock()  # one transaction at a time each
        self._pid = os.getpid() if pid is None else pid
        self._rows: dict[str, list[int]] = {}  # source -> this process's rows in sftp_connections
        self._trusted: dict[tuple[str, str], float] = {}  # (source, account) -> last successful login
        self._safe = [ipaddress.ip_network(net, strict=False) for net in settings.safe_list]
        self._writer: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def write(self, method: Callable[..., T], *args: Any) -> T:
        """Run ``method(*args)`` (one of the writing methods) on the defender's writer thread."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="sftp-defender")
        context = contextvars.copy_context()  # as asyncio.to_thread: log lines keep what is bound (sftp_pid)
        return await asyncio.get_running_loop().run_in_executor(self._writer,
                                                                functools.partial(context.run, method, *args))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, kept referenced until it ends (a release after a connection's end)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Stop the writer thread (after its queued writes) and close the store connections."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        self._db.close()
        if self._reader is not self._db:
            self._reader.close()

    # -- store ---------------------------------------------------------------------
    def _banned_until(self, kind: str, key: str) -> float:
        with self._read_lock:
            row = self._reader.execute("SELECT banned_until FROM defender_entries WHERE kind = ? AND key = ?",
                                       (kind, key)).fetchone()
        return float(row[0]) if row else 0.0

    def _score(self, kind: str, key: str, now: float) -> int:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT COALESCE(SUM(score), 0) FROM defender_events WHERE kind = ? AND key = ? AND at >= ?",
                (kind, key, now - self.settings.observation_seconds)).fetchone()
        return int(row[0])

    # -- queries -------------------------------------------------------------------
    def ban_left(self, host: str) -> float:
        """Seconds left of the source's ban (0 when not banned), whichever process banned it."""
        if not self.settings.enabled:
            return 0.0
        return max(0.0, self._banned_until(SOURCE, host) - self._clock())

    def account_locked(self, account: str) -> bool:
        return bool(self.settings.enabled and self._banned_until(ACCOUNT, account) > self._clock())

    def auth_priority(self, host: str, account: str) -> int:
        """Queue position class of a password check: 0 first; higher waits behind lower."""
        now = self._clock()
        last = self._trusted.get((host, account))
        if last is not None and last >= now - self.settings.observation_seconds:
            return 0
        return 1 + self._score(SOURCE, host, now) + self._score(ACCOUNT, account, now)

    def login_succeeded(self, host: str, account: str) -> None:
        """Remember a successful login (bounded like the other tables)."""
        trusted, now = self._trusted, self._clock()
        if (host, account) not in trusted and len(trusted) >= self.settings.max_entries:
            oldest = sorted(trusted.items(), key=lambda item: item[1])[: max(1, len(trusted) // 10)]
            for key, _ in oldest:
                del trusted[key]
        trusted[(host, account)] = now

    def is_safe(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._safe)

    # -- connections (writes: through write() in the server) ------------------------
    def connection_opened(self, host: str) -> str | None:
        """Count a new connection from ``host`` in every server process; returns why it must be
        refused (banned, or ``max_connections_per_source`` open already), or None."""
        return self.ban_refusal(host) or self.count_connection(host)

    def ban_refusal(self, host: str) -> str | None:
        """Why a connection from ``host`` is refused while the source is banned, or None (a read)."""
        left = self.ban_left(host)
        return f"too many failed logins from {host}: try again in {int(left) + 1} s" if left > 0 else None

    def count_connection(self, host: str) -> str | None:
        """:meth:`connection_opened` without the ban check (the server made it as the connection came)."""
        limit = self.settings.max_connections_per_source
        if not self.settings.enabled or self.is_safe(host):
            return None  # not counted: nothing to refuse
        with self._lock:  # one statement, so one write transaction: the count and the row together
            cursor = self._db.execute(
                "INSERT INTO sftp_connections (source, pid, opened_at) SELECT ?, ?, ? "
                "WHERE (SELECT COUNT(*) FROM sftp_connections WHERE source = ?) < ?",
                (host, self._pid, self._clock(), host, limit))
        if cursor.rowcount != 1:
            self.limit_exceeded(host)
            return f"too many connections from {host} (at most {limit})"
        assert cursor.lastrowid is not None
        self._rows.setdefault(host, []).append(cursor.lastrowid)
        return None

    def connection_closed(self, host: str) -> None:
        """A connection from ``host`` that :meth:`connection_opened` let in has ended."""
        rows = self._rows.get(host)
        if not rows:
            return
        row = rows.pop()
        if not rows:
            del self._rows[host]
        with self._lock:
            self._db.execute("DELETE FROM sftp_connections WHERE id = ? AND pid = ?", (row, self._pid))

    # -- scoring -------------------------------------------------------------------
    def login_failed(self, host: str, account: str, known: bool) -> None:
        s = self.settings
        if s.enabled and not self.is_safe(host):
            self._add(SOURCE, host, s.score_known_user if known else s.score_unknown_user, s.threshold)
        if s.enabled:
            self._add(ACCOUNT, account, s.score_known_user if known else s.score_unknown_user, s.account_threshold)

    def limit_exceeded(self, host: str) -> None:
        if self.settings.enabled and not self.is_safe(host):
            self._add(SOURCE, host, self.settings.score_limit_exceeded, self.settings.threshold)

    def _add(self, kind: str, key: str, score: int, threshold: int) -> None:
        """Record a failure of ``key``; ban it when its score in the window reaches ``threshold``.
        One write transaction, so two processes counting the same source add up."""
        s, now = self.settings, self._clock()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT banned_until, bans FROM defender_entries WHERE kind = ? AND key = ?",
                                 (kind, key)).fetchone()
                if row is None:
                    self._evict(kind, now)
                    db.execute("INSERT INTO defender_entries (kind, key, last_seen) VALUES (?, ?, ?)",
                               (kind, key, now))
                    bans = 0
                else:
                    if row[0] > now:
                        db.execute("COMMIT")
                        return
                    bans = int(row[1])
                    db.execute("UPDATE defender_entries SET last_seen = ? WHERE kind = ? AND key = ?",
                               (now, kind, key))
                window = now - s.observation_seconds
                db.execute("DELETE FROM defender_events WHERE kind = ? AND key = ? AND at < ?", (kind, key, window))
                db.execute("INSERT INTO defender_events (kind, key, at, score) VALUES (?, ?, ?, ?)",
                           (kind, key, now, score))
                total = db.execute("SELECT SUM(score) FROM defender_events WHERE kind = ? AND key = ?",
                                   (kind, key)).fetchone()[0]
                duration = 0.0
                if total >= threshold:
                    duration = s.ban_seconds * (1 + s.ban_increment_percent / 100) ** bans
                    db.execute("UPDATE defender_entries SET banned_until = ?, bans = ? WHERE kind = ? AND key = ?",
                               (now + duration, bans + 1, kind, key))
                    db.execute("DELETE FROM defender_events WHERE kind = ? AND key = ?", (kind, key))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if duration:
            if kind == SOURCE:
                log.warning("source_banned", remote=key, seconds=round(duration), bans=bans + 1)
            else:
                log.warning("account_password_locked", account=key, seconds=round(duration), bans=bans + 1)
            metrics.BANS.labels(kind).inc()

    def _evict(self, kind: str, now: float) -> None:
        """Keep the table of ``kind`` under ``max_entries``: drop the oldest tenth of unbanned entries."""
        db, limit = self._db, self.settings.max_entries
        count = db.execute("SELECT COUNT(*) FROM defender_entries WHERE kind = ?", (kind,)).fetchone()[0]
        if count < limit:
            return
        idle = [r[0] for r in db.execute(
            "SELECT key FROM defender_entries WHERE kind = ? AND banned_until <= ? ORDER BY last_seen LIMIT ?",
            (kind, now, max(1, count // 10)))]
        for key in idle:
            db.execute("DELETE FROM defender_entries WHERE kind = ? AND key = ?", (kind, key))
            db.execute("DELETE FROM defender_events WHERE kind = ? AND key = ?", (kind, key))
