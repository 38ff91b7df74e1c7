"""Account lifecycle through the CLI while ``serve`` runs; every change works at the next login."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
from pathlib import Path

import paramiko
import pytest

from tests.conftest import Daemon, local_flow, make_keypair
from tests.sftp.helpers import paramiko_client

FLOW_ACCOUNT = "district-a"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftp-accounts")
    daemon = Daemon(root, local_flow(FLOW_ACCOUNT, root / "outbox")).start()
    yield daemon
    daemon.stop()


def keygen(folder: Path, kind: str, bits: int | None = None) -> Path:
    key = folder / f"id_{kind}_{bits or 0}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *(["-b", str(bits)] if bits else []), "-N", "", "-f", str(key)],
                   check=True, timeout=60)
    return key


def logs_in(daemon: Daemon, user: str, password: str | None = None, key: Path | None = None) -> bool:
    try:
        paramiko_client(daemon, user, password=password, key=key).close()
        return True
    except paramiko.AuthenticationException:
        return False


def test_create_with_password_shows_it_once_and_stores_only_argon2id(daemon):
    created = daemon.cli_json("accounts", "create", FLOW_ACCOUNT)
    assert len(created["password"]) >= 20 and created["public_keys"] == []
    assert created["host_key_fingerprint"].startswith("SHA256:")
    assert (created["host"], created["port"], created["username"]) == ("localhost", daemon.port, FLOW_ACCOUNT)
    assert "password" not in daemon.cli_json("accounts", "show", FLOW_ACCOUNT)
    with sqlite3.connect(daemon.data_dir / "rostergate.db") as conn:
        stored = conn.execute("SELECT password_hash FROM accounts WHERE name = ?", (FLOW_ACCOUNT,)).fetchone()[0]
    assert stored.startswith("$argon2id$") and created["password"] not in stored
    assert logs_in(daemon, FLOW_ACCOUNT, password=created["password"])
    assert not logs_in(daemon, FLOW_ACCOUNT, password=created["password"] + "x")


def test_key_only_account_and_key_types(daemon, tmp_path):
    ed25519 = keygen(tmp_path, "ed25519")
    created = daemon.cli_json("accounts", "create", "keys-only", "--public-key", f"{ed25519}.pub", "--no-password")
    assert "password" not in created and len(created["public_keys"]) == 1
    assert logs_in(daemon, "keys-only", key=ed25519)
    ecdsa, rsa = keygen(tmp_path, "ecdsa", 256), keygen(tmp_path, "rsa", 2048)
    several = tmp_path / "several.pub"
    several.write_text(f"# two keys\n{Path(f'{ecdsa}.pub').read_text()}\n{Path(f'{rsa}.pub').read_text()}")
    daemon.cli("accounts", "set-key", "keys-only", str(several))
    assert logs_in(daemon, "keys-only", key=ecdsa) and logs_in(daemon, "keys-only", key=rsa)
    assert not logs_in(daemon, "keys-only", key=ed25519)  # replaced, not added


def test_weak_or_broken_keys_are_refused(daemon, tmp_path):
    weak = keygen(tmp_path, "rsa", 1024)
    result = daemon.cli("accounts", "create", "weak", "--public-key", f"{weak}.pub", check=False)
    assert result.returncode != 0 and "2048" in (result.stdout + result.stderr)
    junk = tmp_path / "junk.pub"
    junk.write_text("ssh-ed25519 not-base64 me@example\n")
    result = daemon.cli("accounts", "create", "junk", "--public-key", str(junk), check=False)
    assert result.returncode != 0 and "line 1" in (result.stdout + result.stderr)
    assert "weak" not in {a["name"] for a in daemon.cli_json("accounts", "list")}


def test_password_and_key_together_and_regenerate(daemon, tmp_path):
    key = make_keypair(tmp_path)
    first = daemon.cli_json("accounts", "create", "both", "--public-key", f"{key}.pub")
    assert logs_in(daemon, "both", password=first["password"]) and logs_in(daemon, "both", key=key)
    second = daemon.cli_json("accounts", "regenerate-password", "both")
    assert second["password"] != first["password"]
    assert not logs_in(daemon, "both", password=first["password"])
    assert logs_in(daemon, "both", password=second["password"]) and logs_in(daemon, "both", key=key)


def test_disable_and_enable_take_effect_at_once(daemon, tmp_path):
    password = daemon.cli_json("accounts", "create", "toggle")["password"]
    daemon.cli("accounts", "disable", "toggle")
    assert not logs_in(daemon, "toggle", password=password)
    daemon.cli("accounts", "enable", "toggle")
    assert logs_in(daemon, "toggle", password=password)


def test_delete_is_refused_while_a_flow_uses_the_account(daemon):
    result = daemon.cli("accounts", "delete", FLOW_ACCOUNT, check=False)
    assert result.returncode != 0 and "flow" in (result.stdout + result.stderr)
    daemon.cli_json("accounts", "create", "leaving")
    assert daemon.home("leaving").exists()
    daemon.cli("accounts", "delete", "leaving", "--yes")
    assert not daemon.home("leaving").exists()
    assert "leaving" not in {a["name"] for a in daemon.cli_json("accounts", "list")}


def test_state_is_owner_only(daemon):
    for path in (daemon.data_dir, daemon.data_dir / "homes", daemon.home(FLOW_ACCOUNT)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in daemon.data_dir.glob("rostergate.db*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
