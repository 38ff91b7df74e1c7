"""Log lines go to stderr as JSON: stdout is only for a command's own output."""

from __future__ import annotations

import json

import pytest
import structlog

from rostergate import logs


@pytest.fixture(autouse=True)
def _restore_structlog():
    """configure() binds the stream capsys replaced: later tests must not log into a closed file."""
    yield
    structlog.reset_defaults()


def test_log_lines_go_to_stderr_and_never_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(json=True)
    structlog.get_logger("rostergate.test").info("something_happened", run_id="r1", password="hunter2")
    out, err = capsys.readouterr()
    assert out == ""
    event = json.loads(err.strip().splitlines()[-1])
    assert event["event"] == "something_happened" and event["password"] == "[redacted]"


def test_console_logs_escape_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(json=False)
    structlog.get_logger("rostergate.test").info("upload_finished", upload="\x1b]0;owned\x07.zip")
    _, err = capsys.readouterr()
    assert "\x1b]0;owned" not in err and "\\x1b]0;owned\\x07" in err
