"""``check-config`` on each configuration ``serve`` or a delivery would fail on: one line naming the key.

Every case starts from a configuration that checks OK (:func:`site`) and breaks one thing; the
command must exit 2 (a broken configuration, the CLI's contract) with exactly one
``config error: KEY: ...`` line on stderr and no traceback. Nothing is written by the check.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from rostergate import checks, config
from rostergate.cli import main
from tests.conftest import ROOT, free_port

HOST_KEY_LINE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEbYm0+g2pEGX9DGNB/nWoHAfZf2BL7FZDafdkprrCbK"


@dataclass
class Site:
    """A configuration with one SFTP flow whose account exists; ``flow`` and ``server`` are TOML lines."""

    root: Path
    port: int
    server: str = ""
    flow: str = ""
    downstream: str = ""
    account: str = "district-a"
    state: Path | None = None  # the state directory, when not ROOT/var

    @property
    def data_dir(self) -> Path:
        return self.state or self.root / "var"

    @property
    def config(self) -> Path:
        return self.root / "rostergate.toml"

    def write(self) -> Path:
        self.config.write_text(
            "[server]\n"
            f'listen = "127.0.0.1:{self.port}"\n'
            f'data_dir = "{self.data_dir}"\n'
            f'host_key = "{self.root / "host_key"}"\n'
            f"{self.server}\n"
            "[[flows]]\n"
            f'account = "{self.account}"\n'
            f"{self.flow}\n"
            "[flows.downstream]\n"
            'url = "sftp://apple@127.0.0.1:2022/dropbox"\n'
            f'password_file = "{self.root / "district-a.pass"}"\n'
            f"{self.downstream or f'host_key = {HOST_KEY_LINE!r}'}\n".replace("'", '"')
        )
        return self.config


def check(site: Site) -> tuple[int, list[str]]:
    """``check-config`` in-process: its exit code and its stderr lines."""
    result = CliRunner().invoke(main, ["--config", str(site.write()), "check-config"])
    assert "Traceback" not in result.output + result.stderr, result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr.splitlines()


def one_problem(site: Site, key: str, says: str) -> str:
    code, lines = check(site)
    errors = [line for line in lines if line.startswith("config error: ")]
    assert code == 2 and len(errors) == 1, lines
    assert errors[0].startswith(f"config error: {key}: ") and says in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def store_with_account(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory whose store has the account district-a (made once: a password costs argon2)."""
    root = tmp_path_factory.mktemp("store")
    made = Site(root, free_port())
    (root / "district-a.pass").write_text("downstream-password\n")
    created = CliRunner().invoke(main, ["--config", str(made.write()), "accounts", "create", "district-a"])
    assert created.exit_code == 0, created.output
    return made.data_dir


@pytest.fixture
def site(tmp_path: Path, store_with_account: Path) -> Iterator[Site]:
    """A site that checks OK: its account exists and its password file is owner-only."""
    site = Site(tmp_path, free_port())
    shutil.copytree(store_with_account, site.data_dir)
    secret = tmp_path / "district-a.pass"
    secret.write_text("downstream-password\n")
    secret.chmod(0o600)
    code, lines = check(site)
    assert code == 0, lines
    yield site


def test_a_site_that_checks_ok_says_so(site):
    result = CliRunner().invoke(main, ["--config", str(site.write()), "check-config"])
    assert result.exit_code == 0 and result.stdout.startswith("configuration OK")


# -- the state directory and the host key ----------------------------------------------
def test_a_state_directory_that_cannot_be_created(site):
    blocker = site.root / "not-a-folder"
    blocker.write_text("")
    site.state = blocker / "var"
    one_problem(site, "server.data_dir", f"{blocker / 'var'} cannot be created: {blocker} is not a folder")


def _without_dac_override() -> list[str]:
    """Run a command as this user but unable to override file modes: root loses CAP_DAC_OVERRIDE."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to check an unwritable folder as root")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]


def test_a_state_directory_this_user_cannot_write(site):
    site.data_dir.chmod(0o500)
    try:
        result = subprocess.run([*_without_dac_override(), sys.executable, "-m", "rostergate", "--config",
                                 str(site.write()), "check-config"], capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    finally:
        site.data_dir.chmod(0o700)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr
    assert errors[0].startswith(f"config error: server.data_dir: {site.data_dir} is not writable by ")
    assert errors[0].endswith(f"; make it so: chmod 700 {site.data_dir}")  # it is this user's own folder


def test_a_corrupt_host_key(site):
    (site.root / "host_key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
    line = one_problem(site, "server.host_key", "is not a valid private key")
    assert "restore it from a backup" in line


# -- the listen addresses -------------------------------------------------------------
@pytest.mark.parametrize("key", ["server.listen", "server.metrics_listen"])
def test_a_listen_address_in_use(site, key):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if key == "server.listen":
            site.port = port
        else:
            site.server = f'metrics_listen = "127.0.0.1:{port}"'
        one_problem(site, key, f"cannot listen on 127.0.0.1:{port}: the address is already in use")


# -- flows ---------------------------------------------------------------------------
def test_a_flow_whose_account_does_not_exist(site):
    site.account = "district-b"
    one_problem(site, "flows[0].account", "account 'district-b' does not exist; create it with "
                                          "'rostergate accounts create district-b'")


@pytest.mark.parametrize("content, mode, says", [
    ("", 0o600, "is empty"),
    ("  \n", 0o600, "is empty"),
    ("downstream-password\n", 0o644, "may be read by others (mode 0644); make it owner-only: chmod 600"),
    ("downstream-password\n", 0o640, "may be read by others (mode 0640)"),
], ids=["empty", "blank", "world-readable", "group-readable"])
def test_a_password_file_that_is_empty_or_readable_by_others(site, content, mode, says):
    secret = site.root / "district-a.pass"
    secret.write_text(content)
    secret.chmod(mode)
    one_problem(site, "flows[0].downstream.password_file", says)


def test_a_key_file_readable_by_others(site):
    key = site.root / "downstream_key"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o644)
    site.downstream = f'key_file = "{key}"\nhost_key = "{HOST_KEY_LINE}"'
    one_problem(site, "flows[0].downstream.key_file", "may be read by others")


@pytest.mark.parametrize("entry, port", [
    ("[127.0.0.1]:2200", 2022),   # the host, on another port
    ("sftp.example.org", 2022),   # another host
])
def test_a_known_hosts_file_without_the_downstream_host(site, entry, port):
    known_hosts = site.root / "known_hosts"
    known_hosts.write_text(f"{entry} {HOST_KEY_LINE}\n")
    site.downstream = f'known_hosts = "{known_hosts}"'
    one_problem(site, "flows[0].downstream.known_hosts",
                f"has no key for [127.0.0.1]:{port}; add it (ssh-keyscan -p {port} 127.0.0.1")


def test_a_known_hosts_file_with_the_downstream_host_is_fine(site):
    known_hosts = site.root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:2022 {HOST_KEY_LINE}\n")
    site.downstream = f'known_hosts = "{known_hosts}"'
    assert check(site)[0] == 0


@pytest.mark.parametrize("setting, key, says", [
    ('remote_name = "{acount}-{run_id}.zip"', "flows[0].downstream.remote_name", "unknown placeholder {acount}"),
    ('remote_name = "{account"', "flows[0].downstream.remote_name", "is not a valid name template"),
], ids=["misspelt", "unclosed"])
def test_a_bad_remote_name_template(site, setting, key, says):
    site.downstream = f"host_key = \"{HOST_KEY_LINE}\"\n{setting}"
    one_problem(site, key, says)


def test_a_bad_mapping_template_placeholder(site):
    site.flow = '[flows.mapping.students.sis_username]\ntemplate = "{givenNme}.{familyName}"'
    one_problem(site, "flows[0].mapping.students.sis_username.template",
                "unknown template field {givenNme}: not a users.csv column")


@pytest.mark.parametrize("make", [
    lambda root: (root / "outbox").write_text("a file, not a folder"),
], ids=["file-not-folder"])
def test_a_folder_downstream_that_is_a_file(tmp_path, make: Callable[[Path], object]):
    make(tmp_path)
    config = tmp_path / "rostergate.toml"
    config.write_text(f'[server]\nlisten = "127.0.0.1:{free_port()}"\ndata_dir = "{tmp_path / "var"}"\n'
                      f'[[flows]]\naccount = "a"\n[flows.downstream]\nurl = "file://{tmp_path / "outbox"}"\n')
    assert CliRunner().invoke(main, ["--config", str(config), "accounts", "create", "a"]).exit_code == 0
    result = CliRunner().invoke(main, ["--config", str(config), "check-config"])
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error: ")]
    assert result.exit_code == 2 and errors == [
        f"config error: flows[0].downstream.url: {tmp_path / 'outbox'} is not a folder"]


def test_nothing_is_written_by_the_check(site):
    def files() -> list[tuple[Path, int]]:
        # SQLite's shared-memory index (-shm) is touched by any reader of a WAL store, read-only too.
        return sorted((p, p.stat().st_mtime_ns) for p in site.root.rglob("*")
                      if p.name not in ("rostergate.toml", "rostergate.db-shm"))

    before = files()
    assert check(site)[0] == 0
    assert files() == before


# -- beyond the configuration's own parse: what this installation can serve, what paramiko can use --
def _sftp(raw_server: dict):
    return config.parse({"server": raw_server}).server.sftp


def test_a_key_exchange_list_this_installation_cannot_serve_is_named(monkeypatch):
    """The names are checked at load; what asyncssh offers of them, here (they depend on the installation)."""
    settings = _sftp({"algorithms": {"kex": ["curve25519-sha256"]}})
    assert checks.sftp_algorithms(settings) == []
    assert checks.sftp_algorithms(_sftp({})) == []
    monkeypatch.setattr(checks, "available_kex", lambda: {"diffie-hellman-group14-sha256"})
    assert checks.sftp_algorithms(settings) == [
        "server.algorithms.kex: none of these key exchanges is available in this installation"]


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def test_a_pinned_host_key_paramiko_cannot_use_is_named(tmp_path):
    """Well formed (the configuration loads) but no point of the curve: the full parse refuses it."""
    key = tmp_path / "k"
    key.write_text("x")
    key.chmod(0o600)
    blob = _string(b"ecdsa-sha2-nistp256") + _string(b"nistp256") + _string(b"\x04" + bytes(64))
    flow = config.parse({"flows": [{"account": "a", "downstream": {
        "url": "sftp://u@h/x", "key_file": str(key),
        "host_key": f"ecdsa-sha2-nistp256 {base64.b64encode(blob).decode()}",
    }}]}, base=tmp_path).flows[0]
    problems = checks.flow_problems(flow, "flows[0]")
    assert len(problems) == 1 and problems[0].startswith("flows[0].downstream.host_key: not a usable")
