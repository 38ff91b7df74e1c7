"""The warm-up run a worker makes as it starts: a made-up district that passes, and nothing left behind."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

import pytest

from rostergate.daemon import WORKER_PRELOAD
from rostergate.runs import warmup, workers


def test_the_warm_up_district_is_converted_and_leaves_no_file_behind() -> None:
    before = set(Path(tempfile.gettempdir()).glob("rostergate-warm-up-*"))
    prepared = warmup.warm_up()
    assert prepared.outcome == "ready", [i.message for i in prepared.issues]
    assert not [i for i in prepared.issues if i.severity == "error"]
    assert [s.name for s in prepared.steps] == ["unpack", "detect", "validate", "convert", "check-output"]
    students = warmup.STUDENTS
    assert prepared.counts["users.csv"]["delivered"] == students + 1
    assert prepared.counts["enrollments.csv"]["delivered"] == 2 * students + 2
    assert set(Path(tempfile.gettempdir()).glob("rostergate-warm-up-*")) == before


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
