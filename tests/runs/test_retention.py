"""Retention: settled runs lose their files after a while; records, runs in progress and the baseline stay."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from rostergate.config import Retention
from rostergate.errors import IllegalTransition, RetryableError, RunError
from rostergate.history import AuditTrail
from rostergate.runs import safeguard
from rostergate.runs.retention import purge
from rostergate.runstatus import RunStatus
from tests.runs.conftest import ACCOUNT


def with_retention(bench, keep_days=None, keep_runs=None):
    """The bench's settings with a server-wide ``[retention]``."""
    return dataclasses.replace(bench.pipeline.settings, retention=Retention(keep_days, keep_runs))


def delivered(bench, clock, keep_students=None) -> str:
    """A run received a minute after the last one and processed to its resting status."""
    clock.advance(60)
    run_id = bench.receive(keep_students)
    bench.step()
    return run_id


def files_of(bench, run_id: str) -> list[Path]:
    reports = bench.accounts.home(ACCOUNT) / "reports"
    return [bench.data_dir / "spool" / run_id, reports / f"{run_id}.txt", reports / f"{run_id}.json"]


def test_keep_runs_removes_the_files_of_older_runs_and_keeps_their_records(bench, clock):
    first, second, third = (delivered(bench, clock) for _ in range(3))
    assert all(p.exists() for run_id in (first, second, third) for p in files_of(bench, run_id))
    issues_before = bench.history.show(first)["issues"]

    result = purge(with_retention(bench, keep_runs=1), bench.history, dry_run=False)

    assert [r.run_id for r in result.removals] == [first, second] and not result.refused
    assert all("not among the account's last 1 run(s)" in r.why for r in result.removals)
    for run_id in (first, second):
        assert not any(os.path.lexists(p) for p in files_of(bench, run_id))
        shown = bench.history.show(run_id)
        assert shown["status"] == "delivered" and shown["purged_at"] == clock.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert shown["steps"] and shown["deliveries"]
    assert bench.history.show(first)["issues"] == issues_before
    assert all(p.exists() for p in files_of(bench, third))
    assert result.totals["runs"] == 2 and result.totals["paths"] == 6 and result.totals["bytes"] > 0
    # the safeguard's baseline is not a run's file: the next upload is still compared with it
    assert safeguard.snapshot_path(bench.data_dir, ACCOUNT).exists()
    fourth = delivered(bench, clock)
    assert "within thresholds" in bench.history.steps(fourth)[-2]["message"]
    assert purge(with_retention(bench, keep_runs=1), bench.history).totals["runs"] == 1  # third goes now


def test_a_dry_run_lists_what_would_go_and_changes_nothing(bench, clock):
    first = delivered(bench, clock)
    delivered(bench, clock)
    listed = purge(with_retention(bench, keep_runs=1), bench.history, dry_run=True)
    assert [r.run_id for r in listed.removals] == [first]
    assert sorted(listed.removals[0].paths) == sorted(str(p) for p in files_of(bench, first))
    assert listed.to_dict()["dry_run"] is True
    assert all(p.exists() for p in files_of(bench, first))
    assert bench.history.get(first).purged_at is None
    assert AuditTrail(bench.history.conn).entries() == []


def test_keep_days_counts_from_when_the_run_finished_and_both_limits_must_let_go(bench, clock):
    old = delivered(bench, clock)
    clock.advance(10 * 86400)
    recent = delivered(bench, clock)
    clock.advance(86400)
    delivered(bench, clock)
    assert purge(with_retention(bench, keep_days=30), bench.history, dry_run=True).removals == []
    clock.advance(25 * 86400)  # old finished 36 days ago, recent 26
    assert [r.run_id for r in purge(with_retention(bench, keep_days=30), bench.history, dry_run=True).removals] == [
        old]
    # keep_runs = 5 keeps all three whatever their age: a run goes only when every limit lets it go
    assert purge(with_retention(bench, keep_days=30, keep_runs=5), bench.history).removals == []
    both = purge(with_retention(bench, keep_days=20, keep_runs=1), bench.history)
    assert [r.run_id for r in both.removals] == [old, recent]
    assert "more than 20 day(s) ago and not among the account's last 1 run(s)" in both.removals[0].why


def test_no_retention_configured_removes_nothing(bench, clock):
    delivered(bench, clock)
    delivered(bench, clock)
    clock.advance(3650 * 86400)
    assert purge(bench.pipeline.settings, bench.history).removals == []


def test_nothing_of_a_run_in_progress_or_held_is_ever_removed(bench, clock):
    baseline = delivered(bench, clock)
    clock.advance(60)
    held = bench.receive()
    bench.history.set_status(held, RunStatus.PROCESSING)
    bench.lifecycle.settle(held, RunStatus.HELD, "held for an operator's approval")  # writes its reports
    clock.advance(60)
    retrying = bench.receive()
    bench.history.set_status(retrying, RunStatus.PROCESSING)
    bench.lifecycle.retry_later(retrying, 1, "down", 3600)
    clock.advance(60)
    processing = bench.receive()
    bench.history.set_status(processing, RunStatus.PROCESSING)
    clock.advance(60)
    received = bench.receive()
    clock.advance(365 * 86400)

    result = purge(with_retention(bench, keep_days=0, keep_runs=0), bench.history)

    assert [r.run_id for r in result.removals] == [baseline]
    for run_id in (held, retrying, processing, received):
        run = bench.history.get(run_id)
        assert run.purged_at is None and (bench.data_dir / "spool" / run_id / "upload.zip").exists(), run.status
    assert (bench.accounts.home(ACCOUNT) / "reports" / f"{held}.json").exists()
    assert safeguard.snapshot_path(bench.data_dir, ACCOUNT).exists()
    # the held run is approved and delivered as it was checked: nothing it needs went
    bench.lifecycle.approve(held)
    bench.history.conn.execute("UPDATE runs SET status = 'superseded' WHERE id IN (?, ?, ?)",
                               (retrying, processing, received))
    assert bench.step().status is RunStatus.DELIVERED


def test_a_purged_run_can_never_start_again(bench, clock, forwarder):
    forwarder.outcomes = [RetryableError("down")] * 5
    failed = delivered(bench, clock)
    for _ in range(4):
        clock.advance(7200)
        bench.step()
    assert bench.history.get(failed).status is RunStatus.FAILED
    delivered(bench, clock)
    purge(with_retention(bench, keep_runs=1), bench.history)
    with pytest.raises(RunError, match="removed by retention .* ask the district to upload again"):
        bench.lifecycle.retry(failed)
    with pytest.raises(IllegalTransition):  # and in the store itself, whoever asks
        bench.history.set_status(failed, RunStatus.RECEIVED, "retry", only_from={RunStatus.FAILED})
    assert bench.history.get(failed).status is RunStatus.FAILED


def test_files_left_by_an_interrupted_pass_go_on_the_next(bench, clock):
    first = delivered(bench, clock)
    delivered(bench, clock)
    assert bench.history.mark_purged(first)  # as a pass does, then stopped before removing anything
    result = purge(bench.pipeline.settings, bench.history)  # no retention configured: only the leftovers
    assert [r.run_id for r in result.removals] == [first] and "left behind" in result.removals[0].why
    assert not any(os.path.lexists(p) for p in files_of(bench, first))
    assert purge(bench.pipeline.settings, bench.history).removals == []


def test_removals_are_in_the_audit_trail_per_account(bench, clock):
    first = delivered(bench, clock)
    delivered(bench, clock)
    purge(with_retention(bench, keep_runs=1), bench.history)
    [entry] = AuditTrail(bench.history.conn).entries()
    assert (entry.action, entry.account, entry.run_id) == ("runs.purge", ACCOUNT, None)
    assert entry.detail.startswith("1 run(s), ") and first in entry.detail


@pytest.mark.parametrize("tamper", ["spool-path-elsewhere", "spool-path-root", "spool-link", "account-name",
                                    "reports-link"])
def test_purge_refuses_to_remove_anything_outside_the_data_dir(bench, clock, tmp_path, tamper):
    """A path from the store that points elsewhere is refused, and the other place keeps everything."""
    first = delivered(bench, clock)
    second = delivered(bench, clock)
    victim = tmp_path / "victim"
    fake_run = victim / "spool" / first  # shaped like a spool folder, but not ours
    fake_run.mkdir(parents=True)
    (fake_run / "upload.zip").write_text("not the daemon's")
    (victim / "reports").mkdir()
    (victim / "reports" / f"{first}.txt").write_text("not the daemon's either")
    spool = bench.data_dir / "spool" / first
    if tamper == "spool-path-elsewhere":
        bench.history.update(first, spool_path=str(fake_run / "upload.zip"))
    elif tamper == "spool-path-root":
        bench.history.update(first, spool_path="/upload.zip")
    elif tamper == "spool-link":  # the run's folder replaced by a link to the other place
        os.rename(spool, tmp_path / "moved")
        spool.symlink_to(fake_run, target_is_directory=True)
    elif tamper == "account-name":
        bench.history.conn.execute("UPDATE runs SET account = ? WHERE id = ?",
                                   (os.path.relpath(victim, bench.data_dir / "homes"), first))
    else:  # the account's reports folder replaced by a link to the other place
        reports = bench.accounts.home(ACCOUNT) / "reports"
        os.rename(reports, tmp_path / "moved-reports")
        reports.symlink_to(victim / "reports", target_is_directory=True)

    result = purge(with_retention(bench, keep_runs=0), bench.history)

    assert first in [r.run_id for r in result.refused] and first not in [r.run_id for r in result.removals]
    assert all("refusing" in r.reason for r in result.refused)
    if tamper != "reports-link":  # one refused run does not stop the others
        assert [r.run_id for r in result.removals] == [second]
    assert (fake_run / "upload.zip").read_text() == "not the daemon's"
    assert (victim / "reports" / f"{first}.txt").read_text() == "not the daemon's either"
    assert bench.history.get(first).purged_at is None  # refused: not marked, nothing changed
    assert bench.history.get(first).status is RunStatus.DELIVERED
