"""Fixtures of the alert tests: real receivers on 127.0.0.1 and owner-only secret files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerts.receivers import MailServer, WebhookReceiver

WEBHOOK_SECRET = b"shared-webhook-secret"


def secret_file(folder: Path, name: str, content: bytes) -> Path:
    """An owner-only (0600) file holding ``content`` and a line break, as an operator writes one."""
    path = folder / name
    path.write_bytes(content + b"\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def webhook_secret(tmp_path: Path) -> Path:
    return secret_file(tmp_path, "webhook.secret", WEBHOOK_SECRET)


@pytest.fixture
def mail_server(tmp_path: Path) -> Iterator[MailServer]:
    server = MailServer(tmp_path)
    yield server
    server.stop()
