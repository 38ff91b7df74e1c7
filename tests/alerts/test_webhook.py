"""The webhook sender against a real HTTP server on 127.0.0.1: body, signature, and which answers are retried."""

from __future__ import annotations

import re

import pytest

from rostergate.alerts import webhook
from rostergate.alerts.payload import Alert
from rostergate.errors import AlertError
from tests.alerts.conftest import WEBHOOK_SECRET, secret_file
from tests.alerts.receivers import WebhookReceiver
from tests.conftest import free_port

ALERT = Alert(event="run.failed", account="district-a", run_id="20261122-084151-3f9a1c", status="failed",
              reason_code="delivery_refused", reason_text="permission denied on /dropbox", at="2026-11-22T08:41:51Z",
              inspect="rostergate runs show 20261122-084151-3f9a1c",
              counts={"errors": 0, "warnings": 1, "issues": {"oneroster.grade": 1}}, server="sftp.example")


def test_post_sends_the_documented_body_signed_with_the_shared_secret(receiver, webhook_secret):
    status = webhook.post(receiver.url, ALERT, webhook_secret, "d" * 32, timeout=5)

    assert status == 204
    [got] = receiver.requests
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-rostergate-event"] == "run.failed"
    assert got.headers["x-rostergate-delivery"] == "d" * 32
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", got.headers["x-rostergate-signature"])
    assert got.signed_with(WEBHOOK_SECRET)  # the secret without the file's line break
    assert not got.signed_with(WEBHOOK_SECRET + b"\n") and not got.signed_with(b"another secret")
    body = got.json()
    assert set(body) == {"event", "account", "run_id", "status", "reason", "counts", "at", "inspect", "server",
                         "details"}
    assert body["reason"] == {"code": "delivery_refused", "text": "permission denied on /dropbox"}
    assert body["inspect"] == "rostergate runs show 20261122-084151-3f9a1c"
    assert got.body == ALERT.body()  # what was signed is what was sent, byte for byte


@pytest.mark.parametrize(("answer", "retryable"), [(500, True), (503, True), (429, True), (408, True),
                                                   (404, False), (401, False), (400, False)])
def test_server_errors_are_retryable_and_client_errors_final(webhook_secret, answer, retryable):
    receiver = WebhookReceiver(answers=[answer])
    try:
        with pytest.raises(AlertError) as raised:
            webhook.post(receiver.url, ALERT, webhook_secret, "d" * 32, timeout=5)
    finally:
        receiver.stop()
    assert raised.value.retryable is retryable
    assert str(answer) in str(raised.value)


def test_a_redirect_is_refused_and_never_followed(webhook_secret):
    receiver = WebhookReceiver(answers=[302])
    try:
        with pytest.raises(AlertError) as raised:
            webhook.post(receiver.url, ALERT, webhook_secret, "d" * 32, timeout=5)
    finally:
        receiver.stop()
    assert not raised.value.retryable and receiver.tries == 1


def test_nothing_listening_is_retryable(webhook_secret):
    with pytest.raises(AlertError) as raised:
        webhook.post(f"http://127.0.0.1:{free_port()}/hook", ALERT, webhook_secret, "d" * 32, timeout=5)
    assert raised.value.retryable and "unreachable" in str(raised.value)


def test_a_receiver_slower_than_the_timeout_is_retryable(webhook_secret):
    receiver = WebhookReceiver(delay=2.0)
    try:
        with pytest.raises(AlertError) as raised:
            webhook.post(receiver.url, ALERT, webhook_secret, "d" * 32, timeout=0.3)
    finally:
        receiver.stop()
    assert raised.value.retryable


def test_secret_file_missing_is_retryable_empty_is_final(tmp_path, receiver):
    with pytest.raises(AlertError) as missing:
        webhook.post(receiver.url, ALERT, tmp_path / "absent", "d" * 32, timeout=5)
    with pytest.raises(AlertError) as empty:
        webhook.post(receiver.url, ALERT, secret_file(tmp_path, "empty", b""), "d" * 32, timeout=5)
    assert missing.value.retryable and "webhook_secret_file" in str(missing.value)
    assert not empty.value.retryable
    assert receiver.tries == 0  # nothing unsigned ever goes out
