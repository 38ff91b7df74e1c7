"""History store: runs, claiming, superseding, steps, issues, queries."""

from datetime import timedelta

from rostergate import store, timeutil
from rostergate.formats.issues import Issue
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
