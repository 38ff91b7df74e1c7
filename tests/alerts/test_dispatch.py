"""The dispatcher: never blocks the caller, retries with back-off, gives up and drops loudly."""

from __future__ import annotations

import threading
import time

from structlog.testing import capture_logs

from rostergate.alerts.dispatch import Dispatcher
from rostergate.alerts.payload import Alert
from rostergate.alerts.settings import AlertSettings, DispatchSettings
from rostergate.errors import AlertError
from tests.alerts.conftest import WEBHOOK_SECRET
from tests.alerts.receivers import WebhookReceiver

FAST = DispatchSettings(retry_base_seconds=0.01, retry_max_seconds=0.03, timeout_seconds=2, max_attempts=5)
TARGET = AlertSettings(webhook_url="http://127.0.0.1:9/hook")


def alert(n: int = 1) -> Alert:
    return Alert(event="run.failed", account="district-a", run_id=f"run-{n}", status="failed",
                 reason_code="delivery_refused", reason_text="refused", at="2026-11-22T08:41:51Z",
                 inspect=f"rostergate runs show run-{n}")


def wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


class Script:
    """A sender that raises the scripted errors in turn, then succeeds; ``gate`` holds every call until set."""

    def __init__(self, errors: list[Exception] | None = None, gate: threading.Event | None = None):
        self.errors = list(errors or [])
        self.gate = gate
        self.calls: list[tuple[str | None, str]] = []
        self.sent: list[str | None] = []

    def __call__(self, alert: Alert, target: AlertSettings, delivery_id: str, timeout: float) -> None:
        if self.gate is not None:
            assert self.gate.wait(timeout=20)
        self.calls.append((alert.run_id, delivery_id))
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(alert.run_id)


def test_a_webhook_answering_500_is_tried_again_until_it_takes_the_alert(tmp_path, webhook_secret):
    receiver = WebhookReceiver(answers=[500, 503])
    target = AlertSettings(webhook_url=receiver.url, webhook_secret_file=webhook_secret)
    dispatcher = Dispatcher(FAST)
    try:
        with capture_logs() as logs:
            assert dispatcher.submit(alert(), target)
            [got] = receiver.wait_for(1)
            assert wait(lambda: any(e["event"] == "alert_sent" for e in logs))
    finally:
        dispatcher.close(grace=1)
        receiver.stop()
    assert receiver.tries == 3
    assert len(set(receiver.delivery_ids)) == 1  # one alert: the same delivery id on every try
    assert got.signed_with(WEBHOOK_SECRET) and got.json()["run_id"] == "run-1"
    retries = [e for e in logs if e["event"] == "alert_retrying"]
    assert [e["attempt"] for e in retries] == [1, 2] and all(e["log_level"] == "warning" for e in retries)
    assert "HTTP 500" in retries[0]["error"]


def test_submit_returns_at_once_while_every_sender_is_stuck():
    gate = threading.Event()
    sender = Script(gate=gate)
    dispatcher = Dispatcher(FAST, senders={"webhook": sender})
    try:
        for n in range(5):
            assert dispatcher.submit(alert(n), TARGET)  # would hang the test (its timeout) if submit waited
        assert dispatcher.pending == 5 and sender.calls == []
        gate.set()
        assert wait(lambda: len(sender.sent) == 5)
    finally:
        gate.set()
        dispatcher.close(grace=1)
    assert sorted(sender.sent) == [f"run-{n}" for n in range(5)]


def test_a_full_queue_drops_the_alert_and_says_so():
    gate = threading.Event()
    dispatcher = Dispatcher(DispatchSettings(queue_size=2), senders={"webhook": Script(gate=gate)})
    try:
        with capture_logs() as logs:
            assert dispatcher.submit(alert(1), TARGET) and dispatcher.submit(alert(2), TARGET)
            assert not dispatcher.submit(alert(3), TARGET)
    finally:
        gate.set()
        dispatcher.close(grace=1)
    [dropped] = [e for e in logs if e["event"] == "alert_dropped"]
    assert dropped["log_level"] == "error" and dropped["run_id"] == "run-3" and dropped["reason"] == "queue full"


def test_backoff_doubles_up_to_its_maximum_then_gives_up_after_max_attempts():
    sender = Script(errors=[AlertError("down")] * 10)
    dispatcher = Dispatcher(FAST, senders={"webhook": sender})
    try:
        with capture_logs() as logs:
            dispatcher.submit(alert(), TARGET)
            assert wait(lambda: any(e["event"] == "alert_failed" for e in logs))
    finally:
        dispatcher.close(grace=1)
    assert len(sender.calls) == FAST.max_attempts and sender.sent == []
    assert [e["retry_in_seconds"] for e in logs if e["event"] == "alert_retrying"] == [0.01, 0.02, 0.03, 0.03]
    [failed] = [e for e in logs if e["event"] == "alert_failed"]
    assert failed["log_level"] == "error" and failed["why"] == "no tries left"


def test_a_final_error_is_not_retried():
    sender = Script(errors=[AlertError("HTTP 404", retryable=False)])
    dispatcher = Dispatcher(FAST, senders={"webhook": sender})
    try:
        with capture_logs() as logs:
            dispatcher.submit(alert(), TARGET)
            assert wait(lambda: any(e["event"] == "alert_failed" for e in logs))
    finally:
        dispatcher.close(grace=1)
    assert len(sender.calls) == 1
    assert [e["why"] for e in logs if e["event"] == "alert_failed"] == ["retrying cannot help"]


def test_a_sender_that_crashes_does_not_stop_the_dispatcher():
    sender = Script(errors=[RuntimeError("a bug")])
    dispatcher = Dispatcher(FAST, senders={"webhook": sender}, threads=1)
    try:
        with capture_logs() as logs:
            dispatcher.submit(alert(1), TARGET)
            dispatcher.submit(alert(2), TARGET)
            assert wait(lambda: sender.sent == ["run-2"])
    finally:
        dispatcher.close(grace=1)
    assert [e["error"] for e in logs if e["event"] == "alert_failed"] == ["RuntimeError"]


def test_each_channel_is_a_job_of_its_own():
    """A dead webhook does not keep the e-mail back."""
    webhook, email = Script(errors=[AlertError("down")] * 10), Script()
    target = AlertSettings(webhook_url="http://127.0.0.1:9/hook", smtp_url="smtp://127.0.0.1:9",
                           email_from="a@b.example", email_to=("c@d.example",))
    dispatcher = Dispatcher(FAST, senders={"webhook": webhook, "email": email})
    try:
        dispatcher.submit(alert(), target)
        assert wait(lambda: email.sent == ["run-1"])
    finally:
        dispatcher.close(grace=1)


def test_close_reports_what_it_leaves_unsent():
    sender = Script(errors=[AlertError("down")] * 10)
    slow = DispatchSettings(retry_base_seconds=60, retry_max_seconds=60)
    dispatcher = Dispatcher(slow, senders={"webhook": sender})
    dispatcher.submit(alert(), TARGET)
    assert wait(lambda: len(sender.calls) == 1)
    with capture_logs() as logs:
        assert dispatcher.close(grace=0.2) == 1
    assert [e["event"] for e in logs] == ["alert_unsent"]
    assert not dispatcher.submit(alert(2), TARGET)  # closed: refused, and said so
