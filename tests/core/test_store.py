"""The state store: migrations from an older schema, and a schema newer than the code refused and left alone."""

from __future__ import annotations

import sqlite3

import pytest

from rostergate import store
from rostergate.errors import StoreError
from rostergate.history import History
from rostergate.runstatus import RunStatus


def test_a_newer_store_is_refused_and_left_unchanged(tmp_path):
    store.connect(tmp_path).close()
    newer = len(store.MIGRATIONS) + 1
    with sqlite3.connect(tmp_path / store.DB_NAME) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(StoreError, match=f"version {newer}, newer"):
        store.connect(tmp_path)
    with sqlite3.connect(tmp_path / store.DB_NAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == newer


def test_the_cli_says_it_in_one_line(rostergate, tmp_path):
    store.connect(tmp_path / "var").close()
    with sqlite3.connect(tmp_path / "var" / store.DB_NAME) as conn:
        conn.execute(f"PRAGMA user_version = {len(store.MIGRATIONS) + 5}")
    config = tmp_path / "rostergate.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n')
    result = rostergate("--config", str(config), "runs", "list")
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "newer than this rostergate knows" in result.stderr


def _store_at(path, version: int) -> sqlite3.Connection:
    """A store file made by the rostergate whose schema was at ``version`` (its migrations only)."""
    conn = sqlite3.connect(path / store.DB_NAME)
    for script in store.MIGRATIONS[:version]:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def test_a_store_from_before_the_kept_counts_is_migrated_with_its_runs_counted(tmp_path):
    """Migration 9 counts the runs already there, and from then on its triggers keep the counts."""
    old = _store_at(tmp_path, 8)
    runs = [("r1", "a", "delivered"), ("r2", "a", "delivered"), ("r3", "a", "failed"), ("r4", "b", "held")]
    old.executemany("INSERT INTO runs (id, account, status, upload_name, received_at, finished_at, spool_path)"
                    " VALUES (?, ?, ?, 'x.zip', '2026-11-01T00:00:00Z', '2026-11-01T00:01:00Z', '/spool/x')", runs)
    old.commit()
    old.close()

    history = History(store.connect(tmp_path))
    assert history.conn.execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)
    assert history.stats() == {"total": 4, "by_status": {"delivered": 2, "failed": 1, "held": 1},
                               "by_account": {"a": {"delivered": 2, "failed": 1}, "b": {"held": 1}}}
    assert history.activity()["a"] == {"last_upload": "2026-11-01T00:00:00Z", "last_delivery": "2026-11-01T00:01:00Z"}
    history.record_received("r5", "b", "y.zip", "/spool/y", 1, "0" * 64)
    history.set_status("r4", "discarded", only_from=[RunStatus.HELD])
    assert history.stats()["by_account"]["b"] == {"received": 1, "discarded": 1}
    triggers = {r[0] for r in history.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert triggers == {"run_counts_insert", "run_counts_update", "run_counts_delete"}


def test_a_migration_script_is_split_at_statement_ends_not_inside_a_trigger():
    script = """
    CREATE TABLE t (x INTEGER);
    CREATE TRIGGER t_insert AFTER INSERT ON t BEGIN
        UPDATE t SET x = x + 1 WHERE x = NEW.x; DELETE FROM t WHERE x < 0;
    END;
    ;
    CREATE INDEX t_x ON t(x)
    """
    found = store.statements(script)
    assert [s.split()[:2] for s in found] == [["CREATE", "TABLE"], ["CREATE", "TRIGGER"], ["CREATE", "INDEX"]]
    assert found[1].endswith("END;") and "DELETE FROM t WHERE x < 0;" in found[1]
    conn = sqlite3.connect(":memory:")
    for statement in found:
        conn.execute(statement)
    conn.execute("INSERT INTO t VALUES (1)")
    assert conn.execute("SELECT x FROM t").fetchall() == [(2,)]


def test_a_connection_for_passing_state_does_not_wait_for_the_disk_and_others_do(tmp_path):
    durable, passing = store.connect(tmp_path), store.connect(tmp_path, durable=False)
    try:
        assert durable.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: every commit on the disk
        assert passing.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: WAL, no fsync per commit
    finally:
        durable.close()
        passing.close()
