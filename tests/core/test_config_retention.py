"""``[retention]`` and ``[flows.retention]``: parsed, defaulted per flow, and every wrong key named."""

from __future__ import annotations

import pytest

from rostergate import config
from rostergate.config import Retention
from rostergate.errors import ConfigError


def settings(tmp_path, retention: dict | None = None, flow_retention: dict | None = None):
    flows = [{"account": "a", "downstream": {"url": (tmp_path / "out").as_uri()}},
             {"account": "b", "downstream": {"url": (tmp_path / "out").as_uri()}}]
    if flow_retention is not None:
        flows[0]["retention"] = flow_retention
    raw: dict = {"server": {"data_dir": str(tmp_path)}, "flows": flows}
    if retention is not None:
        raw["retention"] = retention
    return config.parse(raw, base=tmp_path)


def test_without_retention_nothing_is_ever_due(tmp_path):
    s = settings(tmp_path)
    assert s.retention == Retention() and not s.retention.enabled
    assert s.retention_for("a") == Retention() and s.retention_interval_seconds == 3600


def test_a_flow_takes_the_server_default_and_overrides_the_keys_it_sets(tmp_path):
    s = settings(tmp_path, {"keep_days": 90, "keep_runs": 50, "interval_seconds": 600}, {"keep_runs": 5})
    assert s.retention_for("a") == Retention(keep_days=90, keep_runs=5)
    assert s.retention_for("b") == Retention(keep_days=90, keep_runs=50)
    assert s.retention_for("no-flow") == Retention(keep_days=90, keep_runs=50)
    assert s.retention_interval_seconds == 600
    lifted = settings(tmp_path, {"keep_days": 90, "keep_runs": 50}, {"keep_days": False, "keep_runs": False})
    assert lifted.retention_for("a") == Retention() and not lifted.retention_for("a").enabled


def test_zero_is_a_limit_too(tmp_path):
    assert settings(tmp_path, {"keep_days": 0}).retention == Retention(keep_days=0)


@pytest.mark.parametrize("retention, flow_retention, expected", [
    ({"keep_days": -1}, None, "retention.keep_days: must be a whole number >= 0 (or false: no such limit), got -1"),
    ({"keep_runs": 2.5}, None, "retention.keep_runs: must be a whole number >= 0"),
    ({"keep_runs": True}, None, "retention.keep_runs: must be a whole number >= 0"),
    ({"keep_days": "90d"}, None, "retention.keep_days: must be a whole number >= 0"),
    ({"interval_seconds": 0}, None, "retention.interval_seconds: must be a finite number of seconds >= 1, got 0"),
    ({"interval_seconds": float("inf")}, None, "retention.interval_seconds: must be a finite number"),
    ({"keep": 3}, None, "retention.keep: unknown key (expected keep_days, keep_runs, interval_seconds)"),
    ("90 days", None, "retention: must be a table"),
    (None, {"interval_seconds": 60},
     "flows[0].retention.interval_seconds: unknown key (expected keep_days, keep_runs)"),
    (None, {"keep_runs": -3}, "flows[0].retention.keep_runs: must be a whole number >= 0"),
])
def test_every_wrong_key_is_named(tmp_path, retention, flow_retention, expected):
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, retention, flow_retention)
    assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value.problems


def test_the_example_configuration_documents_retention(tmp_path):
    """config.example.toml's commented [retention] block holds real keys with valid values."""
    import tomllib

    from tests.conftest import ROOT

    text = (ROOT / "config.example.toml").read_text()
    block = text[text.index("# [retention]\n"):].split("\n\n")[0]
    raw = tomllib.loads("\n".join(line.removeprefix("# ") for line in block.splitlines()))
    assert set(raw["retention"]) == {"keep_days", "keep_runs", "interval_seconds"}
    assert settings(tmp_path, raw["retention"]).retention.enabled
    flow_block = text[text.index("# [flows.retention]\n"):].split("\n\n")[0]
    flow_raw = tomllib.loads("\n".join(line.removeprefix("# ") for line in flow_block.splitlines()))
    assert settings(tmp_path, raw["retention"], flow_raw["flows"]["retention"]).retention_for("a").enabled
