"""What the pipeline does with a delivery's outcome, driven with a recording Forwarder and a fake clock.

Retry with backoff (doubling, capped), max_attempts, final versus retryable,
supersede and the clean-up of crashed attempts: no daemon, no server.
"""

from __future__ import annotations

import json

import pytest

from rostergate.errors import FinalError, RetryableError
from rostergate.runs import safeguard, stages
from rostergate.runstatus import RunStatus
from tests.runs.conftest import ACCOUNT


def forward_steps(bench, run_id: str) -> list[str]:
    return [s["status"] for s in bench.history.steps(run_id) if s["name"] == "forward"]


def test_a_verified_delivery_settles_the_run_delivered_with_its_receipt(bench, forwarder):
    run_id = bench.receive()
    run = bench.step()
    assert run.status is RunStatus.DELIVERED and run.attempts == 1 and run.finished_at
    [call] = forwarder.calls
    assert call.remote_name == f"{ACCOUNT}-{run_id}.zip"
    assert call.expected_sha256 == run.output_sha256 == call.sent_sha256  # the checked bytes are the ones sent
    assert call.stale == []
    [delivery] = bench.history.deliveries(run_id)
    assert (delivery["status"], delivery["attempts"], delivery["remote"], delivery["sha256"]) == (
        "delivered", 1, f"/fake/{ACCOUNT}-{run_id}.zip", call.sent_sha256)
    report = bench.report(run_id)
    assert "DELIVERED" in report and f"sha256 {call.sent_sha256}" in report
    assert safeguard.snapshot_path(bench.data_dir, ACCOUNT).exists()  # the baseline moved


def test_retryable_failures_back_off_doubling_up_to_the_cap_then_deliver(bench, forwarder, clock):
    bench.configure(retry_base_seconds=10.0, retry_max_seconds=25.0, max_attempts=6)
    forwarder.outcomes = [RetryableError("cannot reach drop.example:22: Connection refused")] * 4
    run_id = bench.receive()
    delays = []
    for _ in range(4):
        run = bench.step()
        assert run.status is RunStatus.RETRYING and run.finished_at is None
        assert "Connection refused" in run.message and "next try at" in run.message
        delays.append(clock.seconds_until(run.next_attempt_at))
        assert bench.step() is None  # not due yet
        clock.advance(delays[-1])
    assert delays == [10, 20, 25, 25]
    run = bench.step()
    assert run.status is RunStatus.DELIVERED and run.attempts == 5
    assert forward_steps(bench, run_id) == ["failed"] * 4 + ["ok"]
    assert len({c.expected_sha256 for c in forwarder.calls}) == 1 and len(forwarder.calls) == 5
    unpacks = [s for s in bench.history.steps(run_id) if s["name"] == "unpack"]
    assert len(unpacks) == 1  # a delivery retry does not prepare again
    assert "Delivery receipt" in bench.report(run_id)


def test_max_attempts_gives_up_as_failed_and_says_so(bench, forwarder, clock):
    bench.configure(retry_base_seconds=1.0, max_attempts=2)
    forwarder.outcomes = [RetryableError("the disk is full")] * 2
    run_id = bench.receive()
    assert bench.step().status is RunStatus.RETRYING
    clock.advance(1)
    run = bench.step()
    assert run.status is RunStatus.FAILED and run.attempts == 2 and run.next_attempt_at is None
    assert run.message == "gave up after 2 attempts: the disk is full"
    assert [d["status"] for d in bench.history.deliveries(run_id)] == ["failed"]
    assert "FAILED" in bench.report(run_id) and "DELIVERED" not in bench.report(run_id)
    assert not safeguard.snapshot_path(bench.data_dir, ACCOUNT).exists()  # nothing was delivered


def test_a_final_error_fails_the_run_at_once(bench, forwarder):
    forwarder.outcomes = [FinalError("host key mismatch for drop.example:22")]
    run_id = bench.receive()
    run = bench.step()
    assert run.status is RunStatus.FAILED and run.attempts == 1
    assert run.message == "host key mismatch for drop.example:22"
    assert len(forwarder.calls) == 1 and bench.step() is None
    assert forward_steps(bench, run_id) == ["failed"]


def test_a_newer_upload_supersedes_a_run_waiting_for_its_retry(bench, forwarder, clock):
    forwarder.outcomes = [RetryableError("cannot reach drop.example:22")]
    older = bench.receive()
    assert bench.step().status is RunStatus.RETRYING
    clock.advance(1)
    newer = bench.receive()
    clock.advance(3600)  # the older run is due too: the newer one wins
    assert bench.step().id == newer
    replaced = bench.history.get(older)
    assert replaced.status is RunStatus.SUPERSEDED and replaced.message == f"replaced by the newer upload {newer}"
    assert bench.history.get(newer).status is RunStatus.DELIVERED
    assert [c.remote_name for c in forwarder.calls] == [f"{ACCOUNT}-{older}.zip", f"{ACCOUNT}-{newer}.zip"]
    assert bench.step() is None  # the superseded run is never tried again


def test_what_a_crashed_attempt_left_is_passed_as_stale_and_then_marked_interrupted(bench, forwarder):
    crashed = bench.receive()
    bench.history.set_status(crashed, RunStatus.SUPERSEDED, "replaced")
    bench.history.delivery_started(crashed, (bench.root / "out").as_uri(), 1, "/fake/.crashed.zip.partial")
    run_id = bench.receive()
    assert bench.step().id == run_id
    assert forwarder.calls[0].stale == ["/fake/.crashed.zip.partial"]
    assert bench.history.deliveries(crashed)[0]["status"] == "interrupted"


def test_a_remote_name_that_cannot_be_filled_fails_the_run_with_a_message_not_an_internal_error(bench, forwarder):
    bench.configure(remote_name="{acount}-{run_id}.zip")
    run_id = bench.receive()
    run = bench.step()
    assert run.status is RunStatus.FAILED and "internal error" not in run.message
    assert "flows.downstream.remote_name" in run.message and forwarder.calls == []
    assert "flows.downstream.remote_name" in bench.report(run_id)


def test_a_held_run_approved_by_the_operator_is_delivered_as_checked(bench, forwarder):
    bench.configure(safeguards={"max_removed_percent": 30, "min_previous_rows": 0})
    bench.receive()
    assert bench.step().status is RunStatus.DELIVERED
    held = bench.receive(keep_students=1)
    run = bench.step()
    assert run.status is RunStatus.HELD and "HELD" in bench.report(held)
    assert len(forwarder.calls) == 1  # nothing delivered while held
    bench.lifecycle.approve(held)
    run = bench.step()
    assert run.status is RunStatus.DELIVERED
    assert forwarder.calls[-1].expected_sha256 == run.output_sha256  # the bytes the safeguard judged
    assert [s["name"] for s in bench.history.steps(held)].count("unpack") == 1  # not prepared again


def test_an_operator_retry_after_a_give_up_prepares_again_and_delivers(bench, forwarder):
    bench.configure(max_attempts=1)
    forwarder.outcomes = [RetryableError("cannot reach drop.example:22")]
    run_id = bench.receive()
    assert bench.step().status is RunStatus.FAILED
    bench.lifecycle.retry(run_id)
    run = bench.step()
    assert run.status is RunStatus.DELIVERED and run.attempts == 1
    assert [s["name"] for s in bench.history.steps(run_id)].count("unpack") == 2


def test_with_safeguards_off_no_diff_is_made_and_the_step_says_so(bench, forwarder, monkeypatch):
    bench.configure(safeguards={"enabled": False})
    monkeypatch.setattr(stages, "compare", lambda *args: pytest.fail("a diff was made"))
    run_id = bench.receive()
    run = bench.step()
    assert run.status is RunStatus.DELIVERED and run.diff_json is None
    [step] = [s for s in bench.history.steps(run_id) if s["name"] == "safeguard"]
    assert step["status"] == "skipped" and "safeguards are off" in step["message"]
    kept = safeguard.snapshot_path(bench.data_dir, ACCOUNT)
    assert kept.exists() and not safeguard.rows_path(kept).exists()  # the ZIP is the baseline, no row snapshot


def test_a_run_compares_with_the_row_snapshot_of_the_last_delivery_not_its_zip(bench, forwarder, monkeypatch):
    bench.configure(safeguards={"max_removed_percent": 30, "min_previous_rows": 0})
    bench.receive()
    assert bench.step().status is RunStatus.DELIVERED
    kept = safeguard.snapshot_path(bench.data_dir, ACCOUNT)
    assert safeguard.rows_path(kept).exists()
    monkeypatch.setattr(safeguard, "snapshot_of_zip", lambda path: pytest.fail("the last delivery's ZIP was read"))
    held = bench.receive(keep_students=1)
    run = bench.step()
    assert run.status is RunStatus.HELD
    changes = json.loads(run.diff_json)["files"]["students.csv"]
    assert changes["now"] == 1 and changes["removed"] == changes["before"] - 1 > 0
    [step] = [s for s in bench.history.steps(held) if s["name"] == "safeguard"]
    assert step["status"] == "held" and "students.csv would lose" in step["message"]
