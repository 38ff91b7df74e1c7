"""The run lifecycle: the statuses, the table of allowed changes, and the operator's actions."""

from __future__ import annotations

import json
from itertools import product

import pytest
import structlog
from click.testing import CliRunner

from rostergate.cli import main
from rostergate.errors import DeliveryError, FinalError, IllegalTransition, RetryableError, RunError
from rostergate.runs.lifecycle import after_failed_delivery, prepared_before, retry_delay
from rostergate.runstatus import FINAL, TRANSITIONS, RunStatus, allowed, sources

CONTRACT = ["received", "processing", "retrying", "held", "delivered", "rejected", "failed", "discarded",
            "superseded"]


def in_status(bench, status: RunStatus) -> str:
    """A run of the bench's account put straight into ``status`` (test set-up, past the table)."""
    run_id = bench.receive()
    bench.history.conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status.value, run_id))
    return run_id


def test_the_statuses_are_the_contracts_strings_in_the_store_and_in_json(bench):
    assert [s.value for s in RunStatus] == CONTRACT
    run_id = bench.receive()
    stored = bench.history.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    assert stored == "received" and type(stored) is str
    run = bench.history.get(run_id)
    assert run.status is RunStatus.RECEIVED
    shown = run.to_dict()["status"]
    assert type(shown) is str and json.dumps(run.to_dict()).count('"status": "received"') == 1
    assert json.loads(json.dumps(bench.history.show(run_id)))["status"] == "received"


def test_the_table_is_complete_and_final_statuses_lead_nowhere_but_a_failed_runs_retry():
    assert set(TRANSITIONS) == set(RunStatus)
    for status in FINAL - {RunStatus.FAILED}:
        assert TRANSITIONS[status] == frozenset()
    assert TRANSITIONS[RunStatus.FAILED] == {RunStatus.RECEIVED}
    assert sources(RunStatus.SUPERSEDED) == {RunStatus.RECEIVED, RunStatus.RETRYING, RunStatus.HELD}


@pytest.mark.parametrize("current, wanted", list(product(RunStatus, RunStatus)))
def test_every_change_the_table_allows_is_made_and_every_other_refused(bench, current, wanted):
    run_id = in_status(bench, current)
    if allowed(current, wanted):
        bench.history.set_status(run_id, wanted, "changed")
        run = bench.history.get(run_id)
        assert run.status is wanted and run.message == "changed"
        assert (run.finished_at is not None) == wanted.final
    else:
        with pytest.raises(IllegalTransition, match=f"run {run_id} is {current.value}; it cannot become {wanted}"):
            bench.history.set_status(run_id, wanted, "changed")
        assert bench.history.get(run_id).status is current


def test_a_change_asked_only_from_some_statuses_is_refused_from_the_others(bench):
    """How an operator's approval that raced a newer upload (or a give-up) is refused: in the same UPDATE."""
    run_id = in_status(bench, RunStatus.FAILED)  # failed -> received is allowed, but not as an approval
    with pytest.raises(IllegalTransition):
        bench.history.set_status(run_id, RunStatus.RECEIVED, "approved", only_from={RunStatus.HELD})
    assert bench.history.get(run_id).status is RunStatus.FAILED


def test_approve_sends_a_held_run_back_to_be_delivered_as_it_was_checked(bench):
    run_id = in_status(bench, RunStatus.HELD)
    run = bench.lifecycle.approve(run_id)
    assert run.status is RunStatus.RECEIVED and run.approved_at and run.message == "approved by an operator"
    assert prepared_before(run)


def test_reject_discards_a_held_run_and_writes_its_report(bench):
    run_id = in_status(bench, RunStatus.HELD)
    run = bench.lifecycle.reject(run_id)
    assert run.status is RunStatus.DISCARDED and run.finished_at
    report = bench.accounts.home("district-a") / "reports" / f"{run_id}.txt"
    assert "DISCARDED" in report.read_text() and report.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("status", [s for s in RunStatus if s is not RunStatus.HELD])
def test_only_held_runs_can_be_approved_or_rejected(bench, status):
    run_id = in_status(bench, status)
    for action in (bench.lifecycle.approve, bench.lifecycle.reject):
        with pytest.raises(RunError, match=f"run {run_id} is {status.value}; only held runs can be approved"):
            action(run_id)
    assert bench.history.get(run_id).status is status


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.RETRYING])
def test_retry_starts_a_failed_or_retrying_run_afresh(bench, status):
    run_id = in_status(bench, status)
    bench.history.update(run_id, attempts=3, prepare_attempts=2, finished_at="2026-11-22T08:00:00Z")
    run = bench.lifecycle.retry(run_id)
    assert (run.status, run.attempts, run.prepare_attempts, run.finished_at) == (RunStatus.RECEIVED, 0, 0, None)
    assert not prepared_before(run)


@pytest.mark.parametrize("status", [s for s in RunStatus if s not in (RunStatus.FAILED, RunStatus.RETRYING)])
def test_other_runs_cannot_be_retried(bench, status):
    run_id = in_status(bench, status)
    with pytest.raises(RunError, match=f"run {run_id} is {status.value}; only failed or retrying runs"):
        bench.lifecycle.retry(run_id)


def test_actions_on_a_run_that_does_not_exist_say_so(bench):
    for action in (bench.lifecycle.approve, bench.lifecycle.reject, bench.lifecycle.retry):
        with pytest.raises(RunError, match="run 'nope' does not exist"):
            action("nope")


def test_backoff_doubles_from_the_base_and_stops_at_the_cap():
    assert [retry_delay(n, 30, 3600) for n in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert retry_delay(1, 0.2, 1) == 0.2 and retry_delay(5, 0.2, 1) == 1


@pytest.mark.parametrize("error, attempts, expected", [
    (RetryableError("down"), 1, RunStatus.RETRYING),
    (RetryableError("down"), 4, RunStatus.RETRYING),
    (RetryableError("down"), 5, RunStatus.FAILED),
    (FinalError("host key mismatch"), 1, RunStatus.FAILED),
])
def test_a_failed_delivery_is_retried_unless_final_or_out_of_attempts(error: DeliveryError, attempts, expected):
    assert after_failed_delivery(error, attempts, max_attempts=5) is expected


@pytest.fixture
def _restore_structlog():
    """The CLI configures logging onto the stream CliRunner lends it: later tests must not log into it."""
    yield
    structlog.reset_defaults()


def test_the_cli_runs_the_same_actions(bench, _restore_structlog):
    config = bench.root / "rostergate.toml"
    config.write_text(f'[server]\ndata_dir = "{bench.data_dir}"\n')
    held = in_status(bench, RunStatus.HELD)
    done = in_status(bench, RunStatus.DELIVERED)
    runner = CliRunner()
    refused = runner.invoke(main, ["--config", str(config), "runs", "approve", done])
    assert refused.exit_code == 1 and f"run {done} is delivered; only held runs" in refused.output
    assert runner.invoke(main, ["--config", str(config), "runs", "reject", held]).exit_code == 0
    assert bench.history.get(held).status is RunStatus.DISCARDED
    assert "DISCARDED" in (bench.accounts.home("district-a") / "reports" / f"{held}.txt").read_text()
    missing = runner.invoke(main, ["--config", str(config), "runs", "retry", "nope"])
    assert missing.exit_code == 1 and "run 'nope' does not exist" in missing.output
