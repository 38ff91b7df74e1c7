"""What a CLI command loads before it answers: the history and account commands need none of the
heavy libraries (issue 14: they answer in well under a second), the commands that work on data do.

Each case runs in a fresh interpreter (``sys.modules`` of this one is full of everything), with a
configuration that has what makes loading it expensive: an SFTP downstream with a pinned host
key, SFTP limits and defender settings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ONEROSTER_11_VALID, make_keypair, zip_folder

HEAVY = ("pandas", "pyarrow", "numpy", "asyncssh", "paramiko", "argon2")

PROBE = textwrap.dedent("""
    import json, sys
    from rostergate.cli import main

    config, out, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    codes = []
    for command in commands:
        try:
            main(["--config", config, *command], standalone_mode=False)
            codes.append(0)
        except SystemExit as exc:
            codes.append(exc.code)
    heavy = sorted(name for name in json.loads(sys.argv[4]) if name in sys.modules)
    with open(out, "w") as handle:
        json.dump({"codes": codes, "heavy": heavy}, handle)
""")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A configuration with an SFTP flow (pinned host key) and one account in its store."""
    key = make_keypair(tmp_path, "downstream")
    host_key = " ".join((tmp_path / "downstream.pub").read_text().split()[:2])
    config = tmp_path / "rostergate.toml"
    config.write_text(f"""
[server]
data_dir = "{tmp_path / 'var'}"
host_key = "{tmp_path / 'host_key'}"
[server.limits]
max_upload_bytes = 1048576
[server.defender]
threshold = 10
[[flows]]
account = "district-a"
[flows.downstream]
url = "sftp://apple@127.0.0.1:2200/dropbox"
key_file = "{key}"
host_key = "{host_key}"
""")
    created = subprocess.run([sys.executable, "-m", "rostergate", "--config", str(config), "accounts", "create",
                              "district-a", "--public-key", f"{key}.pub", "--no-password"],
                             capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    return config


def _loaded(config: Path, *commands: list[str]) -> dict:
    out = config.parent / "probe.json"
    result = subprocess.run([sys.executable, "-c", PROBE, str(config), str(out), json.dumps(commands),
                             json.dumps(HEAVY)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def test_history_and_account_commands_load_no_heavy_library(site):
    commands = [["runs", "list"], ["runs", "list", "--json"], ["runs", "stats", "--json"],
                ["accounts", "list"], ["accounts", "list", "--json"]]
    assert _loaded(site, *commands) == {"codes": [0] * len(commands), "heavy": []}


def test_a_command_that_works_on_data_does_load_them(site, tmp_path):
    """The probe sees an import when there is one: ``validate`` parses CSV with pandas and pyarrow."""
    upload = zip_folder(ONEROSTER_11_VALID, tmp_path / "roster.zip")
    loaded = _loaded(site, ["validate", str(upload)])
    assert loaded["codes"] == [0] and {"pandas", "pyarrow"} <= set(loaded["heavy"])
