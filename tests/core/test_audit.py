"""The audit trail: who changed which account, when and why; never a secret. ``accounts delete`` asks first."""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner

from rostergate import store
from rostergate.cli import main
from rostergate.history import Actor, AuditTrail, os_user
from tests.conftest import make_keypair


@pytest.fixture
def site(tmp_path):
    """A configuration with one flow (for ``flowed``) and its state directory; the CLI restored afterwards."""
    config = tmp_path / "rostergate.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\nhost_key = "{tmp_path / "var" / "key"}"\n'
                      f'[[flows]]\naccount = "flowed"\n[flows.downstream]\nurl = "{(tmp_path / "out").as_uri()}"\n')
    yield config
    structlog.reset_defaults()  # the CLI configures logging onto the stream CliRunner lends it


def cli(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), *args])


def audit(config: Path, *args: str) -> list[dict]:
    result = cli(config, "audit", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_account_change_is_recorded_with_who_when_and_why(site, tmp_path):
    key = make_keypair(tmp_path)
    created = cli(site, "accounts", "create", "district-a", "--json", "--by", "alice", "--reason", "ticket 41")
    password = json.loads(created.output)["password"]
    regenerated = cli(site, "accounts", "regenerate-password", "district-a", "--json", "--reason", "lost it")
    new_password = json.loads(regenerated.output)["password"]
    assert cli(site, "accounts", "set-key", "district-a", f"{key}.pub", "--by", "bob").exit_code == 0
    assert cli(site, "accounts", "disable", "district-a", "--reason", "contract ended").exit_code == 0
    assert cli(site, "accounts", "enable", "district-a").exit_code == 0
    assert cli(site, "accounts", "delete", "district-a", "--yes", "--reason", "left").exit_code == 0

    entries = audit(site)
    assert [e["action"] for e in entries] == [  # newest first
        "accounts.delete", "accounts.enable", "accounts.disable", "accounts.set-key",
        "accounts.regenerate-password", "accounts.create"]
    me = os_user()
    by = {e["action"]: (e["actor"], e["os_user"], e["reason"]) for e in entries}
    assert by["accounts.create"] == ("alice", me, "ticket 41")
    assert by["accounts.regenerate-password"] == (me, me, "lost it")
    assert by["accounts.set-key"] == ("bob", me, None)
    assert by["accounts.disable"][2] == "contract ended" and by["accounts.delete"][2] == "left"
    assert all(e["account"] == "district-a" and e["at"].endswith("Z") for e in entries)
    fingerprint = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True,
                                 check=True).stdout.split()[1]
    assert entries[3]["detail"] == f"1 public key(s): {fingerprint}"
    assert entries[5]["detail"] == "password, 0 public key(s)"

    # never a secret: neither password, nor its hash, nor the key itself, anywhere in the audit table
    conn = sqlite3.connect(tmp_path / "var" / store.DB_NAME)
    dump = "\n".join(repr(row) for row in conn.execute("SELECT * FROM audit"))
    key_body = Path(f"{key}.pub").read_text().split()[1]
    assert password not in dump and new_password not in dump and key_body not in dump and "$argon2" not in dump


def test_audit_filters_by_account_time_and_count(site, tmp_path):
    for name in ("a1", "a2", "a3"):
        assert cli(site, "accounts", "create", name).exit_code == 0
    cli(site, "accounts", "disable", "a2")
    assert [e["action"] for e in audit(site, "--account", "a2")] == ["accounts.disable", "accounts.create"]
    assert len(audit(site, "--limit", "2")) == 2
    assert len(audit(site, "--since", "1h")) == 4
    assert audit(site, "--since", "2999-01-01") == []
    text = cli(site, "audit")
    assert text.exit_code == 0 and "accounts.disable" in text.output and "a2" in text.output
    assert cli(site, "audit", "--since", "last week").exit_code == 2


def test_an_empty_by_or_a_huge_reason_is_refused(site):
    assert cli(site, "accounts", "create", "a1", "--by", "  ").exit_code == 2
    assert cli(site, "accounts", "create", "a1", "--reason", "x" * 1001).exit_code == 2
    assert audit(site) == []


def test_a_refused_change_is_not_recorded(site):
    assert cli(site, "accounts", "disable", "nobody").exit_code == 1
    cli(site, "accounts", "create", "flowed")
    refused = cli(site, "accounts", "delete", "flowed", "--yes")
    assert refused.exit_code == 1 and "used by a flow" in refused.output
    assert [e["action"] for e in audit(site)] == ["accounts.create"]


def test_delete_without_a_terminal_deletes_as_the_contract_says_and_is_audited(site, tmp_path):
    """DESIGN.md's `accounts delete NAME` works from a script; only a terminal is asked."""
    cli(site, "accounts", "create", "leaving")
    home = tmp_path / "var" / "homes" / "leaving"
    assert home.exists()
    done = cli(site, "accounts", "delete", "leaving")  # CliRunner's stdin is no terminal: nobody to ask
    assert done.exit_code == 0 and "account leaving deleted" in done.output
    assert not home.exists() and sorted(e["action"] for e in audit(site)) == ["accounts.create", "accounts.delete"]


@pytest.mark.parametrize("answer, deleted", [("n", False), ("y", True)])
def test_delete_on_a_terminal_asks_and_does_only_what_it_was_told(site, tmp_path, answer, deleted):
    cli(site, "accounts", "create", "leaving")
    home = tmp_path / "var" / "homes" / "leaving"
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "rostergate", "--config", str(site), "accounts", "delete", "leaving"],
            stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        os.write(primary, f"{answer}\n".encode())
        out, err = process.communicate(timeout=60)
    finally:
        os.close(primary)
        os.close(secondary)
    assert "Delete account leaving and its home" in out
    assert (process.returncode == 0) is deleted and home.exists() is not deleted, err
    assert ("accounts.delete" in [e["action"] for e in audit(site)]) is deleted
    if not deleted:
        assert "account leaving kept" in err


def test_the_trail_is_kept_in_the_store(tmp_path):
    trail = AuditTrail(store.connect(tmp_path))
    trail.record("runs.approve", Actor("alice", "root (sudo from alice)", "checked with the school"), "d", "r1")
    [entry] = trail.entries()
    assert entry.to_dict() == {"at": entry.at, "action": "runs.approve", "actor": "alice",
                               "os_user": "root (sudo from alice)", "account": "d", "run_id": "r1",
                               "reason": "checked with the school", "detail": None}
    assert Actor.current().name == os_user() and Actor.current("carol", "why").name == "carol"
