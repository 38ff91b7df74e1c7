"""The hold rules' configuration (formats/holdrules.py); the rules on real diffs: test_snapshot.py."""

import pytest

from rostergate import config
from rostergate.formats.holdrules import Thresholds, parse_thresholds, render_diff


def test_threshold_config_errors_name_their_keys(tmp_path):
    _, problems = parse_thresholds({"max_removed_percent": 150, "min_previous_rows": -1, "colour": 1},
                                   "flows[0].safeguards")
    assert problems == [
        "flows[0].safeguards.max_removed_percent: must be a number from 0 to 100",
        "flows[0].safeguards.min_previous_rows: must be a whole number >= 0",
        "flows[0].safeguards.colour: unknown key (enabled, max_removed_percent, min_previous_rows)",
    ]
    path = tmp_path / "c.toml"
    path.write_text(f'[[flows]]\naccount = "a"\n[flows.downstream]\nurl = "{tmp_path.as_uri()}"\n'
                    "[flows.safeguards]\nmax_removed_percent = 25\n")
    assert config.load(path).flow_for("a").safeguards == Thresholds(max_removed_percent=25.0)
    path.write_text(path.read_text().replace("= 25", '= "lots"'))
    with pytest.raises(config.ConfigError, match=r"flows\[0\]\.safeguards\.max_removed_percent"):
        config.load(path)


def test_render_diff_is_one_line_per_file_and_says_when_there_is_no_baseline():
    counts = {"before": 100, "now": 95, "added": 0, "removed": 5, "changed": 3, "unchanged": 92}
    text = render_diff({"baseline": False, "files": {"students.csv": counts}})
    lines = text.splitlines()
    assert lines[1].split() == ["students.csv", "100", "95", "0", "5", "3"]
    assert lines[-1] == "(first delivery for this account: nothing to compare with)"
    assert "first delivery" not in render_diff({"baseline": True, "files": {"students.csv": counts}})
