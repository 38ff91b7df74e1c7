"""The one SQLite state store shared by the daemon and the CLI.

Accounts, runs, steps and issues live in ``<data_dir>/rostergate.db``. The CLI
and a running ``serve`` open the same file (WAL mode), so an account created
while the daemon runs works at once. The schema is versioned with
``PRAGMA user_version`` and migrated one step at a time, SFTPGo-style: append a
migration to :data:`MIGRATIONS`, never edit a released one.
"""

from __future__ import annotations

import os
import pwd
import sqlite3
from pathlib import Path

from rostergate.errors import StoreError

MIGRATIONS: list[str] = [
    # 1: accounts, runs, steps, issues
    """
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY,
        password_hash TEXT,
        public_keys TEXT NOT NULL DEFAULT '',
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        status TEXT NOT NULL,
        upload_name TEXT NOT NULL,
        input_format TEXT,
        received_at TEXT NOT NULL,
        finished_at TEXT,
        spool_path TEXT NOT NULL,
        size INTEGER,
        sha256 TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        message TEXT
    );
    CREATE INDEX runs_account_received ON runs(account, received_at);
    CREATE INDEX runs_status ON runs(status);
    CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        message TEXT,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE issues (
        run_id TEXT NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        severity TEXT NOT NULL,
        code TEXT NOT NULL,
        file TEXT,
        line INTEGER,
        "column" TEXT,
        value TEXT,
        message TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    """,
    # 2: roster safety: an operator's approval of a held run, and the run's diff summary
    """
    ALTER TABLE runs ADD COLUMN approved_at TEXT;
    ALTER TABLE runs ADD COLUMN diff_json TEXT
    """,
    # 3 (issue 9, "delivered means verified"): the SHA-256 of the
    # prepared ZIP that passed the checks (the forwarder sends exactly those bytes), and one delivery
    # row per run and destination: status sending | retrying | delivered | failed | interrupted, and
    # the receipt of a verified delivery (remote path, size and SHA-256 of the bytes sent)
    """
    ALTER TABLE runs ADD COLUMN output_sha256 TEXT;
    CREATE TABLE deliveries (
        run_id TEXT NOT NULL REFERENCES runs(id),
        destination TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        remote TEXT,
        size INTEGER,
        sha256 TEXT,
        finished_at TEXT,
        PRIMARY KEY (run_id, destination)
    );
    CREATE INDEX deliveries_destination_status ON deliveries(destination, status)
    """,
    # 4 (issue 9, workers that die are replaced): how often a run's CPU work was started in a
    # worker, counted before each start, so a run that keeps killing its worker (or the daemon)
    # is failed, not tried forever
    """
    ALTER TABLE runs ADD COLUMN prepare_attempts INTEGER NOT NULL DEFAULT 0
    """,
    # 5 (issue 12, retention, audit, reports in JSON): when retention removed a run's files
    # (the record, its steps and issues stay); the conversion's counts per source file (numbers
    # only, for the JSON report of a run delivered after an approval); each issue's fix hint
    # apart from its message; and the audit trail of operator actions (never a secret)
    """
    ALTER TABLE runs ADD COLUMN purged_at TEXT;
    ALTER TABLE runs ADD COLUMN counts_json TEXT;
    ALTER TABLE issues ADD COLUMN hint TEXT;
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        os_user TEXT NOT NULL,
        account TEXT,
        run_id TEXT,
        reason TEXT,
        detail TEXT
    );
    CREATE INDEX audit_account_at ON audit(account, at)
    """,
    # 6 (issue 12, alerts): the alerts that must go out once only (a missed upload deadline, a delivery
    # retrying too long), recorded when first raised so that a restarted daemon does not raise them again;
    # key names the occasion, e.g. "account.late:district-a:2026-11-22T13:00:00Z"
    """
    CREATE TABLE alerts_raised (
        key TEXT PRIMARY KEY,
        event TEXT NOT NULL,
        account TEXT NOT NULL,
        run_id TEXT,
        raised_at TEXT NOT NULL
    );
    CREATE INDEX alerts_raised_run ON alerts_raised(run_id, event)
    """,
    # 7 (issue 14, history at 1,000,000 runs): `runs list` walks runs_received backwards and
    # stops at its limit; `--status` and the pipeline's claim read runs_status_received (which
    # makes the single-column runs_status redundant); `runs stats` counts from
    # runs_account_status alone, `runs stats --since` from the range of runs_received (both
    # covering: the table is not read)
    """
    CREATE INDEX runs_received ON runs(received_at, id, account, status);
    CREATE INDEX runs_status_received ON runs(status, received_at, id);
    DROP INDEX runs_status;
    CREATE INDEX runs_account_status ON runs(account, status)
    """,
    # 8 (issue 14, the SFTP server in several processes): the defender's state and the live SFTP
    # sessions, shared by every server process and kept across restarts. A defender entry is a
    # source address (kind 'source') or a login name (kind 'account'); its failed-login events
    # (score at a wall-clock time) count for observation_seconds. A session row lives while its
    # SFTP session is open in process pid; rows of a process that is gone are removed.
    """
    CREATE TABLE defender_entries (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        banned_until REAL NOT NULL DEFAULT 0,
        bans INTEGER NOT NULL DEFAULT 0,
        last_seen REAL NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE TABLE defender_events (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        at REAL NOT NULL,
        score INTEGER NOT NULL
    );
    CREATE INDEX defender_events_key ON defender_events(kind, key, at);
    CREATE TABLE sftp_sessions (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        pid INTEGER NOT NULL,
        opened_at REAL NOT NULL
    );
    CREATE INDEX sftp_sessions_account ON sftp_sessions(account);
    CREATE INDEX sftp_sessions_pid ON sftp_sessions(pid)
    """,
    # 9 (issue 14, `runs stats` on 1,000,000 runs): the number of runs per account and status, kept
    # by triggers in the same transaction as each change of a run, so that the counts are read from a
    # few hundred rows instead of counted over every run; filled from the runs already there. Each
    # account's newest delivery is one step down runs_account_finished (which also serves the
    # safeguard's "last delivery before this run" and replaces runs_account_status, whose count this
    # table now answers); its newest upload one step down runs_account_received. Runs are inserted,
    # updated and deleted, never REPLACEd (a REPLACE's implicit delete fires no trigger).
    """
    CREATE TABLE run_counts (
        account TEXT NOT NULL,
        status TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (account, status)
    ) WITHOUT ROWID;
    INSERT INTO run_counts (account, status, n) SELECT account, status, COUNT(*) FROM runs GROUP BY account, status;
    CREATE TRIGGER run_counts_insert AFTER INSERT ON runs BEGIN
        INSERT INTO run_counts (account, status, n) VALUES (NEW.account, NEW.status, 1)
            ON CONFLICT (account, status) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER run_counts_delete AFTER DELETE ON runs BEGIN
        UPDATE run_counts SET n = n - 1 WHERE account = OLD.account AND status = OLD.status;
    END;
    CREATE TRIGGER run_counts_update AFTER UPDATE OF account, status ON runs
        WHEN OLD.account IS NOT NEW.account OR OLD.status IS NOT NEW.status BEGIN
        UPDATE run_counts SET n = n - 1 WHERE account = OLD.account AND status = OLD.status;
        INSERT INTO run_counts (account, status, n) VALUES (NEW.account, NEW.status, 1)
            ON CONFLICT (account, status) DO UPDATE SET n = n + 1;
    END;
    CREATE INDEX runs_account_finished ON runs(account, status, finished_at);
    DROP INDEX runs_account_status
    """,
    # 10 (issue 14): the SFTP connections open per source address, counted across server processes
    # ([server.defender] max_connections_per_source); like sftp_sessions, a row lives while its
    # connection is open in process pid, and rows of a process that is gone are removed.
    """
    CREATE TABLE sftp_connections (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        pid INTEGER NOT NULL,
        opened_at REAL NOT NULL
    );
    CREATE INDEX sftp_connections_source ON sftp_connections(source);
    CREATE INDEX sftp_connections_pid ON sftp_connections(pid)
    """,
]

DB_NAME = "rostergate.db"


def connect(data_dir: Path, durable: bool = True) -> sqlite3.Connection:
    """Open (creating and migrating as needed) the state store under ``data_dir``.

    The database file is created owner-only (0600). Connections use autocommit
    mode; write groups use ``with conn:`` transactions. ``durable=False`` is for
    state that lives only while the server runs or may lose its last changes (the SFTP
    servers' session and connection slots, the defender's scores): its commits do not
    wait for the disk (``synchronous=NORMAL`` in WAL mode, a few microseconds instead of
    an fsync, milliseconds, per commit); a power loss may lose the last of them, never
    corrupts the store.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / DB_NAME
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    if not durable:
        conn.execute("PRAGMA synchronous=NORMAL")
    migrate(conn)
    return conn


def connect_memory() -> sqlite3.Connection:
    """A private in-memory store with the full schema (for parts used without a state store: unit tests)."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration newer than the database's ``user_version``.

    A store migrated by a newer rostergate (``user_version`` beyond :data:`MIGRATIONS`) is
    refused with :class:`StoreError` and left as it is: this code would misread it.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the state store is at schema version {version}, newer than this rostergate knows "
            f"({len(MIGRATIONS)}): run the newer rostergate, or restore a backup made with this one"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current >= number:  # another process migrated meanwhile
                conn.execute("ROLLBACK")
                continue
            for statement in statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def statements(script: str) -> list[str]:
    """The SQL statements of a migration script, in order: split at each ``;`` that ends a statement
    (not at those inside a trigger's ``BEGIN ... END``), blank ones left out."""
    found, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                found.append(pending.strip())
            pending = ""
    if pending.strip(" \t\n;"):
        found.append(pending.strip())  # unfinished: executing it reports the syntax error
    return found


def user_name(uid: int | None = None) -> str:
    uid = os.geteuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def refuse_foreign_state(data_dir: Path) -> None:
    """As root, refuse a state directory that belongs to another user (the service's).

    Whatever root writes there (the store's journal, a home, a host key) the
    service could no longer read or change.
    """
    if os.geteuid() != 0:
        return
    try:
        owner = Path(data_dir).stat().st_uid
    except OSError:
        return  # not there yet: it is created by whoever runs first
    if owner != 0:
        name = user_name(owner)
        raise StoreError(f"server.data_dir: {data_dir} belongs to {name}; run this as that user "
                         f"(sudo -u {name} rostergate ...), not as root, so the service can still use its files")
