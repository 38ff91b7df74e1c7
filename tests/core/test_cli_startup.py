"""What a CLI command loads before it answers: the history and account commands need none of the
heavy libraries (issue 14: they answer in well under a second), the commands that work on data do.
The commands that only read the store and print do not even set up logging (``logs=False``), so
structlog and the alert channels stay unloaded too; a command that changes something logs.

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

from rostergate import store
from rostergate.history import History
from tests.conftest import ONEROSTER_11_VALID, make_keypair, zip_folder

HEAVY = ("pandas", "pyarrow", "numpy", "asyncssh", "paramiko", "argon2")
# What the read-only commands skip besides: the logging set-up, and the alert channels and metrics
# (`runs stats` reads account states from rostergate.alerts.states, not from the daemon's notifier).
LOGGING = ("structlog", "rostergate.logs", "prometheus_client", "rostergate.alerts.notify",
           "rostergate.alerts.dispatch")
READ_ONLY = [["runs", "list"], ["runs", "list", "--json"], ["runs", "show", "20261130-120000-abcdef"],
             ["runs", "stats"], ["runs", "stats", "--json"], ["accounts", "list"], ["accounts", "list", "--json"],
             ["audit"], ["audit", "--json"]]

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
    conn = store.connect(tmp_path / "var")
    History(conn).record_received("20261130-120000-abcdef", "district-a", "roster.zip",
                                  str(tmp_path / "var" / "spool" / "upload.zip"), 1, "0" * 64)
    conn.close()
    return config


def _loaded(config: Path, *commands: list[str]) -> dict:
    out = config.parent / "probe.json"
    result = subprocess.run([sys.executable, "-c", PROBE, str(config), str(out), json.dumps(commands),
                             json.dumps(HEAVY + LOGGING)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def test_history_and_account_commands_load_no_heavy_library_and_no_logging(site):
    assert _loaded(site, *READ_ONLY) == {"codes": [0] * len(READ_ONLY), "heavy": []}


def test_a_command_that_changes_something_sets_up_logging(site):
    """The probe sees logging when it is set up: ``accounts disable`` logs through the configured structlog."""
    loaded = _loaded(site, ["accounts", "disable", "district-a"])
    assert loaded["codes"] == [0] and {"structlog", "rostergate.logs"} <= set(loaded["heavy"])


def test_a_read_only_command_writes_only_its_output_to_stdout(site):
    """Without logging set up, stdout is still the command's alone: each ``--json`` answer is one JSON document."""
    for command in (c for c in READ_ONLY if "--json" in c):
        result = subprocess.run([sys.executable, "-m", "rostergate", "--config", str(site), *command],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)


def test_a_command_that_works_on_data_does_load_them(site, tmp_path):
    """The probe sees an import when there is one: ``validate`` parses CSV with pandas and pyarrow."""
    upload = zip_folder(ONEROSTER_11_VALID, tmp_path / "roster.zip")
    loaded = _loaded(site, ["validate", str(upload)])
    assert loaded["codes"] == [0] and {"pandas", "pyarrow"} <= set(loaded["heavy"])
