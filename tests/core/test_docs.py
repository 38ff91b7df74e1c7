"""The README's examples are true: its TOML parses, its config keys exist."""

import re
import tomllib
from pathlib import Path

from rostergate.formats.convert.mapping_config import parse_mapping

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_mapping_example_is_a_valid_mapping():
    block = re.search(r"```toml\n(\[flows\.mapping\].*?)```", README, re.S).group(1)
    mapping, problems = parse_mapping(tomllib.loads(block)["flows"]["mapping"], "flows[0].mapping")
    assert mapping is not None, problems


def test_readme_test_command_is_what_ci_runs():
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "make test" in README and "make test" in ci and "make run" in README
