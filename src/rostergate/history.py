"""Run, step, issue and audit storage and queries.

A run's state lives here, never only in memory: the pipeline reads what to do
next from this store, so a daemon killed at any moment resumes where it was.
Times are ISO 8601 UTC strings (``2026-11-22T08:41:51Z``); a step's carry milliseconds
(``2026-11-22T08:41:51.123Z``).

A run's status is a :class:`~rostergate.runstatus.RunStatus`, stored as its
string value. Every change of it is checked against
:data:`~rostergate.runstatus.TRANSITIONS` in the very ``UPDATE`` that makes it
(:meth:`History.set_status`), because the daemon and the CLI change runs in the
same store at the same time. The enum and its table live in a leaf module so that
this storage imports nothing of ``runs/``; :mod:`rostergate.runs.lifecycle` says
*when* a run moves.

A run whose files retention removed (:mod:`rostergate.runs.retention`) keeps its
record, steps and issues, with ``purged_at`` set; it never changes status again
(its upload is gone, so nothing can start it anew). The :class:`AuditTrail` keeps
who did what to runs and accounts, when and why; never a secret.
"""

from __future__ import annotations

import builtins
import json
import os
import pwd
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Protocol

from rostergate import timeutil
from rostergate.errors import IllegalTransition
from rostergate.formats.issues import Issue
from rostergate.runstatus import FINAL, RunStatus, sources

MAX_STORED_ISSUES = 1000  # per run; the report keeps the full picture via "and N more" issues


def new_run_id() -> str:
    """Sortable, unique and short: ``20261122-084151-3f9a1c``."""
    return f"{timeutil.now().strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}"  # what secrets.token_hex does


@dataclass(frozen=True)
class Run:
    id: str
    account: str
    status: RunStatus
    upload_name: str
    input_format: str | None
    received_at: str
    finished_at: str | None
    spool_path: str
    size: int | None
    sha256: str | None
    attempts: int
    next_attempt_at: str | None
    message: str | None
    approved_at: str | None = None
    diff_json: str | None = None
    output_sha256: str | None = None  # of the prepared ZIP that passed the checks: what is delivered
    prepare_attempts: int = 0  # CPU work started in a worker (runs.pipeline.MAX_PREPARE_ATTEMPTS)
    purged_at: str | None = None  # when retention removed the run's files (the record stays)
    counts_json: str | None = None  # the conversion's counts per source file (runs.stages.Prepared.counts)

    def to_dict(self) -> dict[str, str | None]:
        """The ``runs list --json`` contract shape."""
        return {
            "id": self.id, "account": self.account, "status": self.status.value,
            "upload_name": self.upload_name, "input_format": self.input_format,
            "received_at": self.received_at, "finished_at": self.finished_at,
        }


# What every query that makes Runs selects, in the order Run takes them (see _run).
_RUN_COLUMNS = ", ".join(column.name for column in fields(Run))
_RUN_WIDTH = len(fields(Run))


class Receipt(Protocol):
    """What a verified delivery left (a :class:`rostergate.forward.Receipt`): stored with the delivery."""

    @property
    def remote(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def finished_at(self) -> str: ...


class History:
    """Queries and changes on runs, their steps and their issues."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    # -- runs --------------------------------------------------------------------
    def record_received(
        self, run_id: str, account: str, upload_name: str, spool_path: str, size: int, sha256: str,
        received_at: str | None = None,
    ) -> Run:
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs (id, account, status, upload_name, received_at, spool_path, size, sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, account, RunStatus.RECEIVED.value, upload_name, received_at or timeutil.iso(), spool_path,
                 size, sha256),
            )
        run = self.get(run_id)
        assert run is not None
        return run

    def get(self, run_id: str) -> Run | None:
        row = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row) if row else None

    def list(
        self, account: str | None = None, status: str | None = None, since: datetime | None = None,
        limit: int | None = None,
    ) -> builtins.list[Run]:
        """Runs newest first, filtered by account, status and receive time."""
        sql, params = _newest_first("runs", {"account = ?": account, "status = ?": status,
                                             "received_at >= ?": timeutil.iso(since) if since else None},
                                    "received_at DESC, id DESC", limit, _RUN_COLUMNS)
        return [_run(r) for r in self.conn.execute(sql, params)]

    def set_status(self, run_id: str, status: RunStatus, message: str | None = None, *,
                   only_from: Collection[RunStatus] | None = None, **columns: object) -> None:
        """Move the run to ``status``, setting ``message`` and ``columns`` too, in one statement.

        The run must be in a status that may change to ``status``
        (:data:`~rostergate.runstatus.TRANSITIONS`) and, given ``only_from``, in one
        of those, and its files must not have been purged; otherwise nothing changes
        and :class:`IllegalTransition` is raised. A final status sets ``finished_at``
        and clears ``next_attempt_at``.
        """
        status = RunStatus(status)  # a plain string of the contract is taken too, and checked
        allowed = sources(status) if only_from is None else sources(status) & set(only_from)
        values: dict[str, object] = {"status": status.value, **columns}
        if message is not None:
            values["message"] = message
        if status.final:
            values["finished_at"] = timeutil.iso()
            values["next_attempt_at"] = None
        assignments = ", ".join(f"{column} = ?" for column in values)
        placeholders = ",".join("?" * len(allowed))
        with self.conn:
            changed = self.conn.execute(
                f"UPDATE runs SET {assignments} WHERE id = ? AND status IN ({placeholders}) AND purged_at IS NULL",
                (*values.values(), run_id, *sorted(allowed)),
            ).rowcount
        if not changed:
            current = self.get(run_id)
            raise IllegalTransition(run_id, current.status if current else None, status)

    def update(self, run_id: str, **columns: object) -> None:
        """Change columns of the run other than its status (``set_status`` changes that)."""
        assert columns and "status" not in columns, columns
        assignments = ", ".join(f"{column} = ?" for column in columns)
        with self.conn:
            self.conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*columns.values(), run_id))

    def claim_next(self, busy_accounts: set[str]) -> Run | None:
        """Take the next runnable run (oldest first) of an idle account and mark it ``processing``.

        A newer ``received`` upload of the same account supersedes older runs
        that were not delivered yet (``received``, ``retrying``, ``held``). Runs
        received in the same second are in the order they were recorded (``rowid``):
        the intake records an account's uploads in the order they finished.
        """
        stamp = timeutil.iso()
        replaceable = sorted(sources(RunStatus.SUPERSEDED))
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            rows = self.conn.execute(
                "SELECT * FROM runs WHERE status = ? OR (status = ? AND next_attempt_at <= ?)"
                " ORDER BY received_at, rowid",
                (RunStatus.RECEIVED.value, RunStatus.RETRYING.value, stamp),
            ).fetchall()
            for row in rows:
                if row["account"] in busy_accounts:
                    continue
                newest = self.conn.execute(
                    "SELECT id FROM runs WHERE account = ? AND status = ? ORDER BY received_at DESC, rowid DESC"
                    " LIMIT 1",
                    (row["account"], RunStatus.RECEIVED.value),
                ).fetchone()
                chosen = newest["id"] if newest else row["id"]
                placeholders = ",".join("?" * len(replaceable))
                self.conn.execute(
                    f"UPDATE runs SET status = ?, finished_at = ?, next_attempt_at = NULL,"
                    f" message = ? WHERE account = ? AND id != ? AND status IN ({placeholders})"
                    f" AND (received_at, rowid) <= (SELECT received_at, rowid FROM runs WHERE id = ?)",
                    (RunStatus.SUPERSEDED.value, stamp, f"replaced by the newer upload {chosen}", row["account"],
                     chosen, *(s.value for s in replaceable), chosen),
                )
                self.conn.execute("UPDATE runs SET status = ? WHERE id = ?", (RunStatus.PROCESSING.value, chosen))
                return self.get(chosen)
        return None

    def requeue_interrupted(self) -> builtins.list[str]:
        """Runs left ``processing`` by a killed daemon go back to ``received``."""
        ids = [r["id"] for r in self.conn.execute("SELECT id FROM runs WHERE status = ?",
                                                  (RunStatus.PROCESSING.value,))]
        with self.conn:
            self.conn.execute("UPDATE runs SET status = ? WHERE status = ?",
                              (RunStatus.RECEIVED.value, RunStatus.PROCESSING.value))
        return ids

    def next_wakeup(self) -> str | None:
        row = self.conn.execute(
            "SELECT MIN(next_attempt_at) AS t FROM runs WHERE status = ?", (RunStatus.RETRYING.value,)
        ).fetchone()
        return row["t"] if row else None

    # -- steps -------------------------------------------------------------------
    def start_step(self, run_id: str, name: str) -> int:
        with self.conn:
            seq: int = self.conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            self.conn.execute(
                "INSERT INTO steps (run_id, seq, name, status, started_at) VALUES (?, ?, ?, 'running', ?)",
                (run_id, seq, name, timeutil.iso_ms()),
            )
        return seq

    def add_step(self, run_id: str, name: str, status: str, started_at: str, finished_at: str,
                 message: str = "") -> None:
        """Record a step that already ran (in a worker process)."""
        with self.conn:
            self.conn.execute(
                "INSERT INTO steps (run_id, seq, name, status, started_at, finished_at, message)"
                " SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ? FROM steps WHERE run_id = ?",
                (run_id, name, status, started_at, finished_at, message, run_id),
            )

    def finish_step(self, run_id: str, seq: int, status: str, message: str = "") -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE steps SET status = ?, finished_at = ?, message = ? WHERE run_id = ? AND seq = ?",
                (status, timeutil.iso_ms(), message, run_id, seq),
            )

    def steps(self, run_id: str) -> builtins.list[dict[str, str | None]]:
        return [
            {k: row[k] for k in ("name", "status", "started_at", "finished_at", "message")}
            for row in self.conn.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY seq", (run_id,))
        ]

    # -- issues ------------------------------------------------------------------
    def replace_issues(self, run_id: str, issues: builtins.list[Issue]) -> None:
        kept = issues[:MAX_STORED_ISSUES]
        with self.conn:
            self.conn.execute("DELETE FROM issues WHERE run_id = ?", (run_id,))
            self.conn.executemany(
                'INSERT INTO issues (run_id, seq, severity, code, file, line, "column", value, message, hint)'
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, seq, i.severity, i.code, i.file, i.line, i.column, i.value, i.message, i.hint)
                    for seq, i in enumerate(kept, start=1)
                ],
            )

    def issues(self, run_id: str) -> builtins.list[Issue]:
        return [
            Issue(
                severity=r["severity"], code=r["code"], message=r["message"], file=r["file"],
                line=r["line"], column=r["column"], value=r["value"], hint=r["hint"],
            )
            for r in self.conn.execute("SELECT * FROM issues WHERE run_id = ? ORDER BY seq", (run_id,))
        ]

    # -- deliveries (one row per run and destination; the receipt once verified) ---------
    def delivery_started(self, run_id: str, destination: str, attempts: int, remote: str) -> None:
        """An attempt begins: ``remote`` is where it writes (what a crash in the middle may leave)."""
        with self.conn:
            self.conn.execute(
                "INSERT INTO deliveries (run_id, destination, status, attempts, remote) VALUES (?, ?, 'sending', ?, ?)"
                " ON CONFLICT (run_id, destination) DO UPDATE SET status = 'sending', attempts = excluded.attempts,"
                " remote = excluded.remote, size = NULL, sha256 = NULL, finished_at = NULL",
                (run_id, destination, attempts, remote),
            )

    def delivery_finished(self, run_id: str, destination: str, status: str, receipt: Receipt | None = None) -> None:
        """``delivered`` with its receipt, or ``retrying`` / ``failed``."""
        assert status in ("delivered", "retrying", "failed"), status
        params: builtins.list[object]
        if receipt is None:
            sql, params = "UPDATE deliveries SET status = ?", [status]
        else:
            sql = "UPDATE deliveries SET status = ?, remote = ?, size = ?, sha256 = ?, finished_at = ?"
            params = [status, receipt.remote, receipt.size, receipt.sha256, receipt.finished_at]
        with self.conn:
            self.conn.execute(sql + " WHERE run_id = ? AND destination = ?", (*params, run_id, destination))

    def interrupted_deliveries(self, destination: str, run_id: str) -> builtins.list[tuple[str, str]]:
        """``(run_id, remote)`` of attempts at ``destination`` that a crash cut short.

        An attempt still ``sending`` whose run is not being processed now (or is
        ``run_id`` itself, about to try again) was interrupted.
        """
        rows = self.conn.execute(
            "SELECT d.run_id, d.remote FROM deliveries d JOIN runs r ON r.id = d.run_id"
            " WHERE d.destination = ? AND d.status = 'sending' AND (d.run_id = ? OR r.status != ?)",
            (destination, run_id, RunStatus.PROCESSING.value),
        )
        return [(r["run_id"], r["remote"]) for r in rows]

    def mark_interrupted(self, destination: str, run_ids: builtins.list[str]) -> None:
        """What those attempts left was removed (or the server keeps it out of reach)."""
        with self.conn:
            self.conn.executemany(
                "UPDATE deliveries SET status = 'interrupted' WHERE run_id = ? AND destination = ?"
                " AND status = 'sending'",
                [(run_id, destination) for run_id in run_ids],
            )

    def deliveries(self, run_id: str) -> builtins.list[dict[str, str | int | None]]:
        """The ``deliveries`` of ``runs show --json``: one per destination."""
        return [
            {k: row[k] for k in ("destination", "status", "attempts", "remote", "size", "sha256", "finished_at")}
            for row in self.conn.execute("SELECT * FROM deliveries WHERE run_id = ? ORDER BY destination", (run_id,))
        ]

    # -- alerts raised once (issue 12: a missed deadline, a delivery retrying too long) -----
    def raise_once(self, key: str, event: str, account: str, run_id: str | None = None) -> bool:
        """Record that the alert ``key`` was raised; False when it already was (by this daemon or an earlier one)."""
        with self.conn:
            added = self.conn.execute(
                "INSERT OR IGNORE INTO alerts_raised (key, event, account, run_id, raised_at) VALUES (?, ?, ?, ?, ?)",
                (key, event, account, run_id, timeutil.iso()),
            ).rowcount
        return bool(added)

    def raised(self, run_id: str, event: str) -> bool:
        """True when ``event`` was raised for the run (see :meth:`raise_once`)."""
        row = self.conn.execute("SELECT 1 FROM alerts_raised WHERE run_id = ? AND event = ? LIMIT 1",
                                (run_id, event)).fetchone()
        return row is not None

    def previous_status(self, run_id: str, statuses: Collection[RunStatus]) -> RunStatus | None:
        """The status of the account's latest run received before ``run_id`` whose status is one of ``statuses``
        (receipt order; runs received in the same second in the order they were recorded)."""
        placeholders = ",".join("?" * len(statuses))
        row = self.conn.execute(
            "SELECT r.status FROM runs r, runs me WHERE me.id = ? AND r.account = me.account AND r.id != me.id"
            f" AND r.status IN ({placeholders})"
            " AND (r.received_at < me.received_at OR (r.received_at = me.received_at AND r.rowid < me.rowid))"
            " ORDER BY r.received_at DESC, r.rowid DESC LIMIT 1",
            (run_id, *(RunStatus(s).value for s in statuses)),
        ).fetchone()
        return RunStatus(row["status"]) if row else None

    def activity(self) -> dict[str, dict[str, str | None]]:
        """Per account: ``last_upload`` (its newest run's receipt) and ``last_delivery`` (newest delivered run).

        One index step per account and value (``run_counts`` names the accounts that have runs;
        ``runs_account_received`` and ``runs_account_finished`` end at the newest), not a pass
        over every run.
        """
        rows = self.conn.execute(
            "SELECT account,"
            " (SELECT MAX(received_at) FROM runs WHERE account = c.account) AS last_upload,"
            " (SELECT MAX(finished_at) FROM runs WHERE account = c.account AND status = ?) AS last_delivery"
            " FROM (SELECT account FROM run_counts GROUP BY account HAVING SUM(n) > 0) AS c",
            (RunStatus.DELIVERED.value,),
        )
        return {r["account"]: {"last_upload": r["last_upload"], "last_delivery": r["last_delivery"]} for r in rows}

    def show(self, run_id: str) -> dict[str, object] | None:
        """One run as in ``runs show --json``: the run, its upload's SHA-256, steps, issues and deliveries."""
        run = self.get(run_id)
        if run is None:
            return None
        return {**run.to_dict(), "sha256": run.sha256, "purged_at": run.purged_at, "steps": self.steps(run_id),
                "issues": [i.to_dict() for i in self.issues(run_id)], "deliveries": self.deliveries(run_id)}

    # -- retention (rostergate.runs.retention decides; this stores) ---------------------
    def settled_unpurged(self) -> builtins.list[tuple[Run, int]]:
        """Final runs whose files were not purged yet, each with its place among its account's
        runs (1: the newest, counting runs of every status), oldest first."""
        placeholders = ",".join("?" * len(FINAL))
        rows = self.conn.execute(
            f"SELECT {_RUN_COLUMNS}, newest FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY account"
            " ORDER BY received_at DESC, id DESC)"
            f" AS newest FROM runs) WHERE status IN ({placeholders}) AND purged_at IS NULL"
            " ORDER BY received_at, id",
            sorted(status.value for status in FINAL),
        )
        return [(_run(row), row["newest"]) for row in rows]

    def purged(self, among: Collection[str]) -> builtins.list[Run]:
        """The runs of ``among`` (run ids) whose files were purged, by id (the purged ones only grow:
        the ids filter in SQL, not in Python)."""
        rows = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE purged_at IS NOT NULL "
                                 "AND id IN (SELECT value FROM json_each(?)) ORDER BY id", (json.dumps(sorted(among)),))
        return [_run(r) for r in rows]

    def mark_purged(self, run_id: str) -> bool:
        """Record that the run's files go now; False when it is no longer final (or already purged).

        Marked before anything is removed: from then on no operator action can start the run again.
        """
        placeholders = ",".join("?" * len(FINAL))
        with self.conn:
            changed = self.conn.execute(
                f"UPDATE runs SET purged_at = ? WHERE id = ? AND purged_at IS NULL AND status IN ({placeholders})",
                (timeutil.iso(), run_id, *sorted(status.value for status in FINAL)),
            ).rowcount
        return bool(changed)

    def delivered_before(self, account: str, run: Run) -> Run | None:
        """The account's newest delivered run that finished before ``run`` (what ``run`` was compared with)."""
        row = self.conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE account = ? AND status = ? AND id != ? AND finished_at <= ?"
            " ORDER BY finished_at DESC, id DESC LIMIT 1",
            (account, RunStatus.DELIVERED.value, run.id, run.finished_at or timeutil.iso()),
        ).fetchone()
        return _run(row) if row else None

    def delivered_with(self, account: str, output_sha256: str) -> Run | None:
        """The account's newest delivered run whose delivered ZIP had this SHA-256."""
        row = self.conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE account = ? AND status = ? AND output_sha256 = ?"
            " ORDER BY finished_at DESC, id DESC LIMIT 1",
            (account, RunStatus.DELIVERED.value, output_sha256),
        ).fetchone()
        return _run(row) if row else None

    def stats(self, since: datetime | None = None) -> dict[str, object]:
        """Counts of runs per status (and per account) since ``since``.

        Without ``since`` the counts are those the store keeps per account and status
        (``run_counts``, store migration 9); with it, one ``GROUP BY account, status`` over the
        range of the covering ``runs_received`` index (the ``+`` keeps SQLite from walking
        another index in full for its order and looking every run up for its time).
        """
        sql = "SELECT account, status, n FROM run_counts WHERE n > 0"
        params: builtins.list[object] = []
        if since:
            sql = "SELECT account, status, COUNT(*) AS n FROM runs WHERE received_at >= ? GROUP BY +account, +status"
            params.append(timeutil.iso(since))
        by_status: dict[str, int] = {}
        by_account: dict[str, dict[str, int]] = {}
        for r in self.conn.execute(sql, params):
            by_account.setdefault(r["account"], {})[r["status"]] = r["n"]
            by_status[r["status"]] = by_status.get(r["status"], 0) + r["n"]
        return {"total": sum(by_status.values()), "by_status": by_status, "by_account": by_account}


@dataclass(frozen=True)
class Actor:
    """Who asks for an operator action, and why: the audit trail's ``actor``, ``os_user`` and ``reason``.

    ``name`` is ``--by NAME`` when given, else the operating-system user running the
    command; ``os_user`` is always the latter (``root (sudo from alice)`` under sudo).
    """

    name: str
    os_user: str
    reason: str | None = None

    @classmethod
    def current(cls, by: str | None = None, reason: str | None = None) -> Actor:
        user = os_user()
        return cls(by or user, user, reason or None)


def os_user() -> str:
    """The user running this process, by name when the system knows it."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    sudo = os.environ.get("SUDO_USER")
    return f"{name} (sudo from {sudo})" if sudo and uid == 0 and sudo != name else name


@dataclass(frozen=True)
class AuditEntry:
    """One recorded operator action (``rostergate audit``)."""

    seq: int
    at: str
    action: str  # runs.approve | runs.reject | runs.retry | runs.purge | accounts.create | ...
    actor: str
    os_user: str
    account: str | None
    run_id: str | None
    reason: str | None
    detail: str | None

    def to_dict(self) -> dict[str, object]:
        """The ``audit --json`` shape."""
        return {"at": self.at, "action": self.action, "actor": self.actor, "os_user": self.os_user,
                "account": self.account, "run_id": self.run_id, "reason": self.reason, "detail": self.detail}


class AuditTrail:
    """Who did what to runs and accounts, when and why. ``detail`` is for counts and names, never a secret."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def record(self, action: str, actor: Actor, account: str | None = None, run_id: str | None = None,
               detail: str | None = None) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO audit (at, action, actor, os_user, account, run_id, reason, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (timeutil.iso(), action, actor.name, actor.os_user, account, run_id, actor.reason, detail),
            )

    def entries(self, account: str | None = None, since: datetime | None = None,
                limit: int | None = None) -> builtins.list[AuditEntry]:
        """Newest first, filtered by account and time."""
        filters = {"account = ?": account, "at >= ?": timeutil.iso(since) if since else None}
        sql, params = _newest_first("audit", filters, "at DESC, seq DESC", limit)
        return [AuditEntry(**dict(row)) for row in self.conn.execute(sql, params)]


def _run(row: sqlite3.Row) -> Run:
    """The Run of a row that starts with :data:`_RUN_COLUMNS` (by position: no dict per row, `runs list` makes 1000)."""
    return Run(row[0], row[1], RunStatus(row[2]), *row[3:_RUN_WIDTH])


def _newest_first(table: str, filters: dict[str, str | None], order: str,
                  limit: int | None, columns: str = "*") -> tuple[str, list[str]]:
    """``SELECT columns FROM table`` with the ``filters`` that have a value (``"column = ?": value``), ordered,
    limited."""
    given = {clause: value for clause, value in filters.items() if value}
    where = f"WHERE {' AND '.join(given)}" if given else ""
    sql = f"SELECT {columns} FROM {table} {where} ORDER BY {order}"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return sql, list(given.values())
