"""The state store refuses a schema newer than the code, and leaves it alone."""

from __future__ import annotations

import sqlite3

import pytest

from rostergate import store
from rostergate.errors import StoreError


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


def test_a_connection_for_passing_state_does_not_wait_for_the_disk_and_others_do(tmp_path):
    durable, passing = store.connect(tmp_path), store.connect(tmp_path, durable=False)
    try:
        assert durable.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: every commit on the disk
        assert passing.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: WAL, no fsync per commit
    finally:
        durable.close()
        passing.close()
