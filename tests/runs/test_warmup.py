"""The warm-up run a worker makes as it starts: a made-up district that passes, and nothing left behind."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from rostergate.daemon import WORKER_PRELOAD
from rostergate.runs import warmup, workers


def test_the_warm_up_district_is_converted_and_leaves_no_file_behind() -> None:
    before = set(Path(tempfile.gettempdir()).glob("rostergate-warm-up-*"))
    prepared = warmup.warm_up()
    assert prepared is not None and prepared.outcome == "ready", [i.message for i in prepared.issues]
    assert not [i for i in prepared.issues if i.severity == "error"]
    assert [s.name for s in prepared.steps] == ["unpack", "detect", "validate", "convert", "check-output"]
    students = warmup.STUDENTS
    assert prepared.counts["users.csv"]["delivered"] == students + 1
    assert prepared.counts["enrollments.csv"]["delivered"] == 2 * students + 2
    assert set(Path(tempfile.gettempdir()).glob("rostergate-warm-up-*")) == before


def test_a_warm_up_that_fails_is_logged_and_the_worker_still_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """No room for the made-up district must not cost the worker: the first run is only slower."""
    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(warmup.tempfile, "TemporaryDirectory", full)
    with capture_logs() as logs:
        assert warmup.warm_up() is None
        assert workers._ready(("rostergate.runs.warmup:warm_up",)) > 0
    failed = [e for e in logs if e["event"] == "worker_warm_up_failed"]
    assert len(failed) == 2 and failed[0]["error"] == "OSError"


def test_a_worker_calls_each_named_function_of_its_preload(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(warmup, "warm_up", lambda: calls.append("warmed"))
    assert workers._ready(("rostergate.runs.stages", "rostergate.runs.warmup:warm_up")) > 0
    assert calls == ["warmed"]


def test_the_daemon_s_worker_preload_names_what_exists_and_ends_with_the_warm_up() -> None:
    for name in WORKER_PRELOAD:
        module, _, function = name.partition(":")
        imported = importlib.import_module(module)
        assert not function or callable(getattr(imported, function))
    assert WORKER_PRELOAD[-1] == "rostergate.runs.warmup:warm_up"
