"""History store: runs, claiming, superseding, steps, issues, deliveries, queries."""

import sqlite3
from datetime import timedelta

import pytest

from rostergate import store, timeutil
from rostergate.formats.issues import Issue
from rostergate.forward import Receipt
from rostergate.history import History


def history(tmp_path) -> History:
    return History(store.connect(tmp_path))


def receive(h: History, run_id: str, account: str = "a", at: str = "2026-11-22T08:00:00Z"):
    return h.record_received(run_id, account, f"{run_id}.zip", f"/spool/{run_id}/upload.zip", 10, "0" * 64,
                             received_at=at)


def test_store_file_is_owner_only_and_migrated(tmp_path):
    conn = store.connect(tmp_path)
    assert (tmp_path / store.DB_NAME).stat().st_mode & 0o777 == 0o600
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)
    store.migrate(conn)  # idempotent


def test_claim_takes_one_run_per_account_and_skips_busy_accounts(tmp_path):
    h = history(tmp_path)
    receive(h, "r1", "a", "2026-11-22T08:00:00Z")
    receive(h, "r2", "b", "2026-11-22T08:00:01Z")
    first = h.claim_next(set())
    assert (first.id, first.status) == ("r1", "processing")
    assert h.claim_next({"a"}).id == "r2"
    assert h.claim_next({"a", "b"}) is None


def test_newer_upload_supersedes_undelivered_older_ones(tmp_path):
    h = history(tmp_path)
    receive(h, "old", "a", "2026-11-22T08:00:00Z")
    receive(h, "new", "a", "2026-11-22T08:05:00Z")
    claimed = h.claim_next(set())
    assert claimed.id == "new"
    old = h.get("old")
    assert old.status == "superseded" and "new" in old.message and old.finished_at


def test_retrying_run_is_claimed_only_when_due(tmp_path):
    h = history(tmp_path)
    receive(h, "r1")
    h.claim_next(set())
    later = timeutil.iso(timeutil.now() + timedelta(hours=1))
    h.set_status("r1", "retrying", "down", attempts=1, next_attempt_at=later)
    assert h.claim_next(set()) is None
    assert h.next_wakeup() == later
    h.update("r1", next_attempt_at=timeutil.iso(timeutil.now() - timedelta(seconds=1)))
    assert h.claim_next(set()).id == "r1"


def test_interrupted_runs_are_requeued(tmp_path):
    h = history(tmp_path)
    receive(h, "r1")
    h.claim_next(set())
    assert h.requeue_interrupted() == ["r1"]
    assert h.get("r1").status == "received"


def test_show_contains_steps_and_issues_in_contract_shape(tmp_path):
    h = history(tmp_path)
    receive(h, "r1")
    seq = h.start_step("r1", "unpack")
    h.finish_step("r1", seq, "ok", "7 file(s)")
    h.replace_issues("r1", [Issue("error", "x.y", "bad", "users.csv", 3, "role", "boss")])
    h.set_status("r1", "processing")
    h.set_status("r1", "rejected", "broken")
    shown = h.show("r1")
    assert set(shown) >= {"id", "account", "status", "upload_name", "input_format", "received_at",
                          "finished_at", "steps", "issues"}
    assert shown["steps"][0]["name"] == "unpack" and shown["steps"][0]["finished_at"]
    assert shown["issues"][0] == {"severity": "error", "code": "x.y", "file": "users.csv", "line": 3,
                                  "column": "role", "value": "boss", "message": "bad"}
    assert shown["finished_at"] is not None


def test_list_filters_by_account_status_since_and_limit(tmp_path):
    h = history(tmp_path)
    receive(h, "r1", "a", "2026-11-01T00:00:00Z")
    receive(h, "r2", "b", "2026-11-20T00:00:00Z")
    receive(h, "r3", "a", "2026-11-21T00:00:00Z")
    assert [r.id for r in h.list(account="a")] == ["r3", "r1"]
    assert [r.id for r in h.list(since=timeutil.parse_iso("2026-11-15T00:00:00Z"))] == ["r3", "r2"]
    assert [r.id for r in h.list(limit=1)] == ["r3"]
    h.set_status("r2", "processing")
    h.set_status("r2", "delivered")
    assert [r.id for r in h.list(status="delivered")] == ["r2"]
    assert h.stats()["by_status"] == {"received": 2, "delivered": 1}


# -- deliveries: one row per run and destination ---------------------------------------
DEST = "sftp://apple@upload.example.org/dropbox"


def receipt(remote: str = "/dropbox/a.zip", size: int = 1234) -> Receipt:
    return Receipt(DEST, remote, size, "ab" * 32, "2026-11-22T08:05:00Z", "stat")


def test_delivery_row_follows_its_attempts_and_keeps_the_receipt(tmp_path):
    h = history(tmp_path)
    receive(h, "r1")
    h.delivery_started("r1", DEST, 1, "/dropbox/.a.zip.partial")
    assert h.deliveries("r1") == [{"destination": DEST, "status": "sending", "attempts": 1,
                                   "remote": "/dropbox/.a.zip.partial", "size": None, "sha256": None,
                                   "finished_at": None}]
    h.delivery_finished("r1", DEST, "retrying")
    assert [(d["status"], d["remote"]) for d in h.deliveries("r1")] == [("retrying", "/dropbox/.a.zip.partial")]

    h.delivery_started("r1", DEST, 2, "/dropbox/.a.zip.partial")
    h.delivery_finished("r1", DEST, "delivered", receipt())
    assert h.deliveries("r1") == [{"destination": DEST, "status": "delivered", "attempts": 2,
                                   "remote": "/dropbox/a.zip", "size": 1234, "sha256": "ab" * 32,
                                   "finished_at": "2026-11-22T08:05:00Z"}]

    h.delivery_started("r1", DEST, 3, "/dropbox/.a.zip.partial")  # sent again: the old receipt no longer holds
    (again,) = h.deliveries("r1")
    assert (again["status"], again["attempts"], again["size"], again["sha256"], again["finished_at"]) == (
        "sending", 3, None, None, None)


def test_delivery_rows_are_per_destination_and_in_show(tmp_path):
    h = history(tmp_path)
    receive(h, "r1")
    h.delivery_started("r1", DEST, 1, "/dropbox/.a.zip.partial")
    h.delivery_started("r1", "file:///srv/outbox", 1, "/srv/outbox/.a.zip.partial")
    h.delivery_finished("r1", "file:///srv/outbox", "failed")
    shown = h.show("r1")
    assert shown["sha256"] == "0" * 64  # the upload's, as recorded at intake
    assert [(d["destination"], d["status"]) for d in shown["deliveries"]] == [
        ("file:///srv/outbox", "failed"), (DEST, "sending")]
    receive(h, "r2", at="2026-11-22T08:01:00Z")
    assert h.show("r2")["deliveries"] == []


def test_delivery_finished_takes_only_final_or_retrying_statuses(tmp_path):
    h = history(tmp_path)
    receive(h, "r1")
    h.delivery_started("r1", DEST, 1, "/dropbox/.a.zip.partial")
    with pytest.raises(AssertionError):
        h.delivery_finished("r1", DEST, "sending")


def test_interrupted_deliveries_are_attempts_a_crash_left_sending(tmp_path):
    h = history(tmp_path)
    for run_id in ("crashed", "busy", "retrying", "elsewhere", "me"):
        receive(h, run_id, account=run_id)
        h.delivery_started(run_id, "file:///other" if run_id == "elsewhere" else DEST, 1,
                           f"/dropbox/.{run_id}.zip.partial")
    h.set_status("busy", "processing")  # another account's attempt in progress right now
    h.set_status("me", "processing")  # the run about to try again
    h.delivery_finished("retrying", DEST, "retrying")  # an attempt that ended with an answer
    found = sorted(h.interrupted_deliveries(DEST, "me"))
    assert found == [("crashed", "/dropbox/.crashed.zip.partial"), ("me", "/dropbox/.me.zip.partial")]

    h.mark_interrupted(DEST, ["crashed", "retrying"])  # only a row still "sending" changes
    statuses = {run_id: h.deliveries(run_id)[0]["status"] for run_id in ("crashed", "busy", "retrying")}
    assert statuses == {"crashed": "interrupted", "busy": "sending", "retrying": "retrying"}
    assert h.interrupted_deliveries(DEST, "me") == [("me", "/dropbox/.me.zip.partial")]


def test_a_store_from_before_deliveries_is_migrated(tmp_path):
    conn = sqlite3.connect(tmp_path / store.DB_NAME)
    for script in store.MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO runs (id, account, status, upload_name, received_at, spool_path)"
                 " VALUES ('old', 'a', 'retrying', 'x.zip', '2026-11-01T00:00:00Z', '/spool/old/upload.zip')")
    conn.commit()
    conn.close()
    h = history(tmp_path)
    old = h.get("old")
    assert (old.output_sha256, old.prepare_attempts) == (None, 0)
    assert h.show("old")["deliveries"] == []
    h.delivery_started("old", DEST, 1, "/dropbox/.x.zip.partial")
    assert h.deliveries("old")[0]["status"] == "sending"


def test_uploads_received_in_the_same_second_are_taken_in_the_order_they_were_recorded(tmp_path):
    """Ids end in random hex: within one second the record order decides, for the claim and for superseding."""
    h = history(tmp_path)
    for run_id in ("20261122-080000-ffffff", "20261122-080000-000000"):  # recorded in this order
        receive(h, run_id, "a", "2026-11-22T08:00:00Z")
    claimed = h.claim_next(set())
    assert claimed.id == "20261122-080000-000000"  # the later record, though its id sorts first
    assert h.get("20261122-080000-ffffff").status == "superseded"


def _plans(h: History, call) -> str:
    """The query plans of the statements ``call()`` makes (as SQLite runs them, values bound)."""
    statements: list[str] = []
    h.conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        h.conn.set_trace_callback(None)
    return " | ".join(row[3] for sql in statements if sql.lstrip().upper().startswith("SELECT")
                      for row in h.conn.execute("EXPLAIN QUERY PLAN " + sql))


def test_history_queries_read_indexes_not_the_whole_table(tmp_path):
    """What keeps `runs list`, `runs stats` and the claim fast on a million runs (migrations 7 and 9)."""
    h = history(tmp_path)
    listing = _plans(h, lambda: h.list(limit=1000))
    assert "runs_received" in listing and "TEMP B-TREE" not in listing
    assert "INDEX runs_status_received (status=?)" in _plans(h, lambda: h.list(status="failed", limit=20))
    stats = _plans(h, h.stats)
    assert "run_counts" in stats and " runs" not in stats  # the kept counts, not a count over the runs
    since = _plans(h, lambda: h.stats(timeutil.parse_iso("2026-11-22T00:00:00Z")))
    assert "COVERING INDEX runs_received (received_at>?)" in since
    activity = _plans(h, h.activity)  # one index step per account and value
    assert "COVERING INDEX runs_account_received (account=?)" in activity
    assert "COVERING INDEX runs_account_finished (account=? AND status=?)" in activity
    assert "SCAN runs" not in activity
    assert "runs_status_received" in _plans(h, lambda: h.claim_next(set()))
    indexes = {r[0] for r in h.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert not {"runs_status", "runs_account_status"} & indexes


def _counted(h: History) -> dict[str, dict[str, int]]:
    """Runs per account and status, counted over every run (what ``run_counts`` must always equal)."""
    counted: dict[str, dict[str, int]] = {}
    for row in h.conn.execute("SELECT account, status, COUNT(*) FROM runs GROUP BY account, status"):
        counted.setdefault(row[0], {})[row[1]] = row[2]
    return counted


def test_stats_counts_follow_every_change_of_a_run(tmp_path):
    """The kept counts (store migration 9) move with each insert, status change, superseding and delete."""
    h = history(tmp_path)
    receive(h, "r1", "a", "2026-11-22T08:00:00Z")
    receive(h, "r2", "a", "2026-11-22T08:01:00Z")
    receive(h, "r3", "b", "2026-11-22T08:02:00Z")
    assert h.stats()["by_account"] == _counted(h) == {"a": {"received": 2}, "b": {"received": 1}}
    assert h.claim_next(set()).id == "r2"  # supersedes r1 in the same statement
    h.set_status("r3", "processing")
    h.set_status("r3", "rejected", "bad upload")
    h.update("r2", message="unchanged status")  # no count moves
    expected = {"a": {"superseded": 1, "processing": 1}, "b": {"rejected": 1}}
    assert h.stats()["by_account"] == _counted(h) == expected
    assert h.stats()["by_status"] == {"superseded": 1, "processing": 1, "rejected": 1}
    with h.conn:
        h.conn.execute("DELETE FROM runs WHERE id = 'r3'")
    assert h.stats() == {"total": 2, "by_status": {"superseded": 1, "processing": 1},
                         "by_account": {"a": {"superseded": 1, "processing": 1}}}  # no zero counts
    assert set(h.activity()) == {"a"}


def test_activity_is_each_accounts_newest_upload_and_delivery(tmp_path):
    h = history(tmp_path)
    receive(h, "r1", "a", "2026-11-22T08:00:00Z")
    receive(h, "r2", "a", "2026-11-22T09:00:00Z")
    receive(h, "r3", "b", "2026-11-22T07:00:00Z")
    for run_id in ("r1", "r2"):
        h.set_status(run_id, "processing")
    h.set_status("r1", "delivered")
    h.set_status("r2", "failed", "downstream refused")
    delivered = h.get("r1").finished_at
    assert h.activity() == {"a": {"last_upload": "2026-11-22T09:00:00Z", "last_delivery": delivered},
                            "b": {"last_upload": "2026-11-22T07:00:00Z", "last_delivery": None}}


def test_stats_since_counts_only_the_runs_received_since(tmp_path):
    h = history(tmp_path)
    receive(h, "r1", "a", "2026-11-20T08:00:00Z")
    receive(h, "r2", "a", "2026-11-22T08:00:00Z")
    receive(h, "r3", "b", "2026-11-22T09:00:00Z")
    h.set_status("r3", "processing")
    since = timeutil.parse_iso("2026-11-21T00:00:00Z")
    assert h.stats(since) == {"total": 2, "by_status": {"received": 1, "processing": 1},
                              "by_account": {"a": {"received": 1}, "b": {"processing": 1}}}
    assert h.stats()["total"] == 3 and h.stats()["by_account"]["a"] == {"received": 2}


def test_steps_are_stamped_to_the_millisecond(tmp_path):
    h = history(tmp_path)
    receive(h, "r1")
    seq = h.start_step("r1", "safeguard")
    h.finish_step("r1", seq, "ok")
    (step,) = h.steps("r1")
    for stamp in (step["started_at"], step["finished_at"]):
        assert len(stamp) == len("2026-11-22T08:41:51.123Z") and stamp[19] == "." and stamp.endswith("Z")
    assert timeutil.parse_iso(step["finished_at"]) >= timeutil.parse_iso(step["started_at"])
