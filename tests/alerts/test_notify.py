"""Alerts raised as runs settle (the real pipeline, a real webhook receiver) and by the daemon's watch
(a fake clock): what is sent, when, once, and never a student's data."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from rostergate import config, store
from rostergate.alerts.dispatch import Dispatcher
from rostergate.alerts.notify import Alerter, Watch
from rostergate.alerts.settings import DispatchSettings
from rostergate.alerts.states import account_states
from rostergate.errors import FinalError, RetryableError
from rostergate.history import History
from rostergate.runs.lifecycle import Lifecycle
from rostergate.runs.pipeline import Pipeline
from rostergate.runstatus import RunStatus
from tests.alerts.conftest import WEBHOOK_SECRET
from tests.alerts.receivers import Received, WebhookReceiver
from tests.conftest import ONEROSTER_11_VALID, zip_folder
from tests.runs.conftest import ACCOUNT, Bench, Clock, RecordingForwarder

FAST = DispatchSettings(retry_base_seconds=0.05, retry_max_seconds=0.1, timeout_seconds=5)
# A district whose people are called what no code, message or test text ever says.
SECRET_PEOPLE = {"givenName": "Quorvyn", "familyName": "Thaddeusworth", "sourcedId": "stu-zq81x7",
                 "identifier": "ID-774411", "email": "quorvyn.thaddeusworth@school.example",
                 "username": "qthaddeusworth"}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    from rostergate import timeutil

    fake = Clock()
    monkeypatch.setattr(timeutil, "now", lambda: fake.now)
    # Steps are stamped from the real clock (their durations are real); here they live in the fake time.
    monkeypatch.setattr(timeutil, "iso_ms", lambda moment=None: timeutil.iso(moment or fake.now).replace("Z", ".000Z"))
    return fake


class World:
    """The runs bench with alerts: ``alerts_toml`` is the server's [alerts] table (None: no alerts)."""

    def __init__(self, root: Path, receiver: WebhookReceiver, secret: Path, executor: ThreadPoolExecutor,
                 alerts: bool = True, flow_toml: dict[str, object] | None = None):
        self.forwarder = RecordingForwarder()
        self.bench = Bench(root, self.forwarder, executor)
        self.bench.accounts.create(ACCOUNT)
        self.receiver = receiver
        raw: dict[str, object] = {"server": {"data_dir": str(self.bench.data_dir)},
                                  "flows": [{"account": ACCOUNT, "downstream": {"url": (root / "out").as_uri()},
                                             **(flow_toml or {})}]}
        if alerts:
            raw["alerts"] = {"webhook_url": receiver.url, "webhook_secret_file": str(secret),
                             "retrying_after": "1h"}
        self.settings = config.parse(raw, base=root, source=root / "rostergate.toml")
        self.dispatcher = Dispatcher(FAST)
        self.alerter = Alerter(lambda: self.settings, self.bench.history, self.dispatcher)
        self.bench.pipeline = Pipeline(self.settings, self.bench.history, self.bench.accounts, executor,
                                       forwarder_for=self.forwarder, alerts=self.alerter)

    def watch(self, clock: Clock) -> Watch:
        return Watch(self.alerter, self.bench.accounts, clock=lambda: clock.now)

    def events(self, count: int) -> list[dict]:
        return [r.json() for r in self.receiver.wait_for(count)]


@pytest.fixture
def world(tmp_path, receiver, webhook_secret, clock) -> Iterator[World]:
    with ThreadPoolExecutor(max_workers=1) as executor:
        made = World(tmp_path, receiver, webhook_secret, executor,
                     flow_toml={"safeguards": {"max_removed_percent": 30, "min_previous_rows": 0}})
        yield made
        made.dispatcher.close(grace=1)


def upload_with_secret_people(bench: Bench, break_rule: bool = True) -> str:
    """A OneRoster upload whose first student is one of :data:`SECRET_PEOPLE`; with ``break_rule`` that
    student's role holds the family name, which breaks a rule: the run is rejected with that value in its issues."""
    folder = bench.root / "secret-district"
    shutil.copytree(ONEROSTER_11_VALID, folder, dirs_exist_ok=True)
    users = pd.read_csv(folder / "users.csv", dtype=str, keep_default_na=False)
    first = users.index[users["role"] == "student"][0]
    old_id = users.at[first, "sourcedId"]
    for column, value in SECRET_PEOPLE.items():
        users.at[first, column] = value
    if break_rule:
        users.at[first, "role"] = SECRET_PEOPLE["familyName"]
    users.to_csv(folder / "users.csv", index=False)
    enrollments = pd.read_csv(folder / "enrollments.csv", dtype=str, keep_default_na=False)
    enrollments.loc[enrollments["userSourcedId"] == old_id, "userSourcedId"] = SECRET_PEOPLE["sourcedId"]
    enrollments.to_csv(folder / "enrollments.csv", index=False)
    run_id = bench.intake.accept(ACCOUNT, zip_folder(folder, bench.root / "Thaddeusworth-roster.zip"))
    assert run_id is not None
    return run_id


def assert_no_student_data(received: Received) -> None:
    text = received.body.decode()
    for value in [*SECRET_PEOPLE.values(), "quorvyn", "Thaddeusworth", "thaddeusworth"]:
        assert value not in text, value


def test_a_rejected_run_alerts_by_signed_webhook_and_names_no_student(world):
    run_id = upload_with_secret_people(world.bench)
    run = world.bench.step()
    assert run is not None and run.status is RunStatus.REJECTED
    issues = world.bench.history.issues(run_id)
    assert any("thaddeusworth" in (i.value or "").lower() for i in issues)  # the data is in the issues ...

    [received] = world.receiver.wait_for(1)
    assert_no_student_data(received)  # ... and nowhere in the alert, not even the upload's name
    assert received.signed_with(WEBHOOK_SECRET)
    body = received.json()
    assert body["event"] == "run.rejected" and body["account"] == ACCOUNT and body["run_id"] == run_id
    assert body["status"] == "rejected" and body["reason"]["code"] == "upload_invalid"
    assert body["counts"]["errors"] == sum(1 for i in issues if i.severity == "error") > 0
    assert set(body["counts"]["issues"]) == {i.code for i in issues}
    assert body["inspect"].endswith(f"runs show {run_id}") and "--config" in body["inspect"]
    report = world.bench.report(run_id)
    assert "The operator of this server has been alerted to this run (by webhook)." in report


def test_without_alerts_the_report_claims_nobody_was_told(tmp_path, receiver, webhook_secret, clock):
    with ThreadPoolExecutor(max_workers=1) as executor:
        quiet = World(tmp_path, receiver, webhook_secret, executor, alerts=False)
        run_id = upload_with_secret_people(quiet.bench)
        assert quiet.bench.step().status is RunStatus.REJECTED
        quiet.dispatcher.close(grace=0.5)
    assert "alerted" not in quiet.bench.report(run_id)
    assert receiver.tries == 0


def test_a_dead_webhook_neither_blocks_nor_fails_the_run(tmp_path, webhook_secret, clock):
    hanging = WebhookReceiver(delay=8.0)  # answers long after every run here is settled
    try:
        with ThreadPoolExecutor(max_workers=1) as executor:
            dead = World(tmp_path, hanging, webhook_secret, executor)
            run_id = upload_with_secret_people(dead.bench)
            run = dead.bench.step()  # returns although the webhook has not answered
            assert run is not None and run.status is RunStatus.REJECTED
            assert dead.dispatcher.pending == 1  # the alert is still on its way, not lost
            assert "has been alerted" in dead.bench.report(run_id)
            dead.dispatcher.close(grace=0)
    finally:
        hanging.stop()


def test_a_hook_that_raises_changes_nothing_but_the_log(tmp_path, clock):
    class Broken:
        def settled(self, run, reason):
            raise RuntimeError("the alert system is broken")

    conn = store.connect(tmp_path / "var")
    history = History(conn)
    history.record_received("r1", ACCOUNT, "a.zip", str(tmp_path / "a.zip"), 1, "0" * 64)
    history.set_status("r1", RunStatus.PROCESSING)
    (tmp_path / "home").mkdir()
    run = Lifecycle(history, lambda _: tmp_path / "home", Broken()).settle("r1", RunStatus.FAILED, "x",
                                                                          reason="internal_error")
    assert run.status is RunStatus.FAILED
    assert "alerted" not in (tmp_path / "home" / "reports" / "r1.txt").read_text()


def test_a_failed_delivery_alerts_and_the_next_delivery_says_recovered(world):
    world.forwarder.outcomes = [FinalError("permission denied on /dropbox")]
    failed = world.bench.receive()
    assert world.bench.step().status is RunStatus.FAILED
    delivered = world.bench.receive()
    assert world.bench.step().status is RunStatus.DELIVERED
    first, second = world.events(2)
    assert (first["event"], first["run_id"], first["reason"]["code"]) == ("run.failed", failed, "delivery_refused")
    assert "permission denied" in first["reason"]["text"]
    assert (second["event"], second["run_id"], second["status"]) == ("run.recovered", delivered, "delivered")
    third = world.bench.receive()
    assert world.bench.step().status is RunStatus.DELIVERED  # a delivery after a delivery: nothing to say
    world.dispatcher.close(grace=1)
    assert len(world.receiver.requests) == 2, [r.json()["run_id"] for r in world.receiver.requests] + [third]


def test_a_held_run_alerts(world):
    world.bench.receive()
    assert world.bench.step().status is RunStatus.DELIVERED
    held = world.bench.receive(keep_students=1)
    assert world.bench.step().status is RunStatus.HELD
    [event] = world.events(1)
    assert (event["event"], event["run_id"], event["reason"]["code"]) == ("run.held", held, "safeguard")


def test_a_delivery_retrying_too_long_alerts_once_then_recovers(world, clock):
    world.forwarder.outcomes = [RetryableError("connection refused")] * 3
    run_id = world.bench.receive()
    assert world.bench.step().status is RunStatus.RETRYING
    watch = world.watch(clock)
    assert watch.tick() == []  # retrying, but not for an hour yet
    for _ in range(2):
        clock.advance(1800)
        assert world.bench.step().status is RunStatus.RETRYING
    raised = watch.tick()  # 60 minutes since the first failed attempt
    assert [a.event for a in raised] == ["run.retrying"] and raised[0].details["attempts"] == 3
    assert watch.tick() == [] and world.watch(clock).tick() == []  # once, even for a restarted daemon
    clock.advance(3600)
    assert world.bench.step().status is RunStatus.DELIVERED
    retrying, recovered = world.events(2)
    assert (retrying["event"], retrying["run_id"]) == ("run.retrying", run_id)
    assert retrying["details"]["retrying_since"] == "2026-11-22T08:00:00Z"
    assert (recovered["event"], recovered["run_id"]) == ("run.recovered", run_id)


@pytest.fixture
def late_world(tmp_path, receiver, webhook_secret, clock) -> Iterator[World]:
    with ThreadPoolExecutor(max_workers=1) as executor:
        made = World(tmp_path, receiver, webhook_secret, executor,
                     flow_toml={"schedule": {"expect_upload": "daily 07:00 America/Chicago"}})
        yield made
        made.dispatcher.close(grace=1)


def test_account_late_once_per_missed_deadline_and_not_again_after_a_restart(late_world, clock):
    # The account was created at 08:00 UTC on the 22nd; Chicago's 07:00 is 13:00 UTC.
    watch = late_world.watch(clock)
    clock.advance(4 * 3600)  # 12:00 UTC: before the first deadline
    assert watch.tick() == []
    clock.advance(3600 + 60)  # 13:01: missed
    [late] = watch.tick()
    assert (late.event, late.details["deadline"]) == ("account.late", "2026-11-22T13:00:00Z")
    clock.advance(600)
    assert watch.tick() == [] and late_world.watch(clock).tick() == []  # once, restart or not
    [state] = account_states(late_world.settings, late_world.bench.history, late_world.bench.accounts, clock.now)
    assert state.late and state.missed_deadline == "2026-11-22T13:00:00Z" and state.last_upload is None

    clock.advance(24 * 3600)  # the next day's deadline is missed too: one more alert
    assert [a.details["deadline"] for a in watch.tick()] == ["2026-11-23T13:00:00Z"]

    late_world.bench.receive()  # the district uploads: no longer late
    assert not account_states(late_world.settings, late_world.bench.history, late_world.bench.accounts,
                              clock.now)[0].late
    assert watch.tick() == []
    first, second = late_world.events(2)
    assert first["event"] == second["event"] == "account.late"
    assert first["run_id"] is None and first["status"] is None and first["reason"]["code"] == "deadline_missed"
    assert first["inspect"].endswith("runs stats")
