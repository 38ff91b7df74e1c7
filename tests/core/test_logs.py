"""Log lines go to stderr as JSON: stdout is only for a command's own output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from rostergate import logs

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(autouse=True)
def _restore_structlog():
    """configure() binds the stream capsys replaced: later tests must not log into a closed file."""
    yield
    structlog.reset_defaults()
    import logging
    import threading

    sys.excepthook, threading.excepthook = sys.__excepthook__, threading.__excepthook__
    logging.captureWarnings(False)


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


def test_library_loggers_and_levels_go_through_the_same_json_renderer(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    logs.configure(json=True, level=logging.WARNING)
    structlog.get_logger("rostergate.test").info("too_quiet_to_show")
    structlog.get_logger("rostergate.test").warning("shown", reason="delivery_refused")
    logging.getLogger("asyncssh").warning("library says %s", "hello")
    logging.getLogger("asyncssh").info("library info is below the threshold")
    lines = capsys.readouterr().err.strip().splitlines()
    events = [json.loads(line) for line in lines]  # every line one JSON object
    assert [e["event"] for e in events] == ["shown", "library says hello"]
    assert events[1]["logger"] == "asyncssh" and events[1]["level"] == "warning"


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SRC)})


def test_uncaught_exceptions_in_threads_and_main_are_json_with_the_traceback_as_a_field() -> None:
    result = _run_python(
        "import threading\n"
        "from rostergate import logs\n"
        "logs.configure(json=True)\n"
        "t = threading.Thread(target=lambda: 1 / 0, name='worker'); t.start(); t.join()\n"
        "raise KeyError('boom')\n"
    )
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert [(e["event"], e["error"]) for e in events] == [("unhandled_exception", "ZeroDivisionError"),
                                                          ("unhandled_exception", "KeyError")]
    assert events[0]["thread"] == "worker" and events[0]["level"] == "critical"
    assert all(e["exception"].startswith("Traceback (most recent call last)") for e in events)


def test_serve_that_cannot_start_says_why_in_json_on_a_non_terminal(tmp_path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nlisten = "x"\n')
    result = subprocess.run([sys.executable, "-m", "rostergate", "--log-level", "error", "--config", str(config),
                             "serve"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(SRC), "ROSTERGATE_CONFIG": ""}, cwd=tmp_path)
    assert result.returncode == 2
    events = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert [e["event"] for e in events] == ["serve_refused"]
    assert any("server.listen" in p for p in events[0]["problems"])
    bad = subprocess.run([sys.executable, "-m", "rostergate", "--log-level", "loud", "check-config"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert bad.returncode == 2 and "--log-level" in bad.stderr
