"""Shared test helpers: a real daemon in a subprocess, ZIP builders, SSH keys.

Every network test uses 127.0.0.1 only, and every wait here is bounded in
count and time.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
ONEROSTER_11_VALID = FIXTURES / "oneroster-1.1-valid"
SHARED = ROOT.parent / "shared"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str) -> tuple[int, bytes]:
    """The status and body of a GET of ``url`` (an error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def can_bind(address: str) -> bool:
    """Whether a socket may bind ``address`` here (127.0.0.2 and up as client source addresses)."""
    try:
        with socket.socket() as sock:
            sock.bind((address, 0))
        return True
    except OSError:
        return False


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def zip_folder(folder: Path, target: Path, skip: tuple[str, ...] = ()) -> Path:
    """ZIP the files of ``folder`` at the archive root, leaving out names in ``skip``."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.name not in skip:
                archive.write(path, path.name)
    return target


def make_keypair(folder: Path, name: str = "id_ed25519") -> Path:
    """An ed25519 key pair made by OpenSSH's ssh-keygen; returns the private key path."""
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def public_key_line(key: Path) -> str:
    """``type base64`` of the public half of :func:`make_keypair`'s ``key``: what a host key pin holds."""
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


class Daemon:
    """``rostergate serve`` in a subprocess with its own config and data dir under ``root``."""

    def __init__(self, root: Path, flows_toml: str = "", extra_server_toml: str = ""):
        self.root = root
        self.port = free_port()
        self.data_dir = root / "var"
        self.config = root / "rostergate.toml"
        self.config.write_text(
            "[server]\n"
            f'listen = "127.0.0.1:{self.port}"\n'
            f'data_dir = "{self.data_dir}"\n'
            f'host_key = "{self.data_dir / "ssh_host_ed25519_key"}"\n'
            f"{extra_server_toml}\n{flows_toml}\n"
        )
        self.log = root / "daemon.log"
        self.process: subprocess.Popen | None = None

    def start(self, env: dict[str, str] | None = None) -> Daemon:
        with open(self.log, "ab") as handle:  # the child has its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rostergate", "--config", str(self.config), "serve"],
                stdout=handle, stderr=subprocess.STDOUT, cwd=self.root, env={**os.environ, **(env or {})},
            )
        _RUNNING.add(self)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"daemon did not start:\n{self.log.read_text()}") from None
        return self

    def stop(self, sig: int = 15) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        _RUNNING.discard(self)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "rostergate", "--config", str(self.config), *args],
            capture_output=True, text=True, cwd=self.root, timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"rostergate {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "--json").stdout)

    def runs(self, account: str | None = None) -> list[dict]:
        return self.cli_json("runs", "list", *(["--account", account] if account else []))

    def wait_for_runs(self, count: int, final: bool = True, timeout: float = 30.0,
                      account: str | None = None) -> list[dict]:
        """Wait until ``count`` runs exist (and, with ``final``, none is still in progress)."""
        deadline = time.monotonic() + timeout
        runs: list[dict] = []
        while time.monotonic() < deadline:
            runs = self.runs(account)
            busy = [r for r in runs if r["status"] in ("received", "processing")]
            if len(runs) >= count and not (final and busy):
                return runs
            time.sleep(0.3)
        raise AssertionError(f"expected {count} run(s) within {timeout}s, have {runs}\n{self.log.read_text()}")

    def home(self, account: str) -> Path:
        return self.data_dir / "homes" / account


def local_flow(account: str, outbox: Path, profile: str = "strict") -> str:
    """A [[flows]] entry that delivers into a local folder (no downstream server needed)."""
    return (
        "[[flows]]\n"
        f'account = "{account}"\n'
        f'profile = "{profile}"\n'
        "[flows.downstream]\n"
        f'url = "{outbox.as_uri()}"\n'
    )


_RUNNING: set[Daemon] = set()  # started and not stopped yet


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    """A daemon a test started is stopped when the test ends, passed or failed (one a module's
    fixture started before the test is left to that fixture)."""
    before = set(_RUNNING)
    yield
    for daemon in _RUNNING - before:
        daemon.stop()


@pytest.fixture
def daemon_factory(tmp_path):
    started: list[Daemon] = []

    def make(flows_toml: str = "", extra_server_toml: str = "") -> Daemon:
        daemon = Daemon(tmp_path, flows_toml, extra_server_toml)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI but not installed")
        pytest.skip(f"{name} not installed")
    return path


class OpenSSHDownstream:
    """OpenSSH's ``sshd`` (internal-sftp) on a free 127.0.0.1 port, logging in as the user running
    the tests with a key made by ``ssh-keygen``, writing into :attr:`dropbox`. Tests get one from
    the ``sshd`` or ``sshd_factory`` fixture (the one way sshd is started); an unstarted one is
    also a real host key to pin."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.user = getpass.getuser()
        self.dropbox = root / "dropbox"
        self.dropbox.mkdir(parents=True)
        self.process: subprocess.Popen | None = None
        self.client_key = make_keypair(root, "client_key")
        self.host_key = root / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)
        self.authorized_keys = root / "authorized_keys"
        shutil.copyfile(root / "client_key.pub", self.authorized_keys)
        self.authorized_keys.chmod(0o600)
        self.config = root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\n"
            "StrictModes no\n"
            "UsePAM no\n"
            f"PidFile {root / 'sshd.pid'}\n"
            "Subsystem sftp internal-sftp\n"
            "LogLevel ERROR\n"
        )

    @property
    def host_key_line(self) -> str:
        """The server's public host key as an OpenSSH line, for pinning."""
        return public_key_line(self.host_key)

    def start(self) -> OpenSSHDownstream:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        with open(self.root / "sshd.log", "ab") as log:  # the child has its own copy of the descriptor
            self.process = subprocess.Popen([sshd, "-D", "-e", "-f", str(self.config)],
                                            stdout=subprocess.DEVNULL, stderr=log)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def flow_toml(self, account: str, host_key: str | None = None, profile: str = "strict",
                  extra: str = "") -> str:
        return (
            "[[flows]]\n"
            f'account = "{account}"\n'
            f'profile = "{profile}"\n'
            "[flows.downstream]\n"
            f'url = "sftp://{self.user}@127.0.0.1:{self.port}{self.dropbox}"\n'
            f'key_file = "{self.client_key}"\n'
            f'host_key = "{host_key or self.host_key_line}"\n'
            f"{extra}"
        )


@pytest.fixture(scope="module")
def sshd_factory(tmp_path_factory) -> Iterator[Callable[..., OpenSSHDownstream]]:
    """``sshd_factory(start=True)``: a new :class:`OpenSSHDownstream` in a folder of its own, started
    unless ``start=False`` (a test that starts it later, or wants only its host key). Every one is
    stopped when the module's tests are done, so module-scoped fixtures may use it too."""
    require_tool("sshd")
    made: list[OpenSSHDownstream] = []

    def make(start: bool = True) -> OpenSSHDownstream:
        server = OpenSSHDownstream(tmp_path_factory.mktemp("sshd"))
        made.append(server)
        return server.start() if start else server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def sshd(sshd_factory) -> Iterator[OpenSSHDownstream]:
    """A started OpenSSH sshd on loopback with a client key and a drop box, stopped after the test."""
    server = sshd_factory()
    yield server
    server.stop()


@contextmanager
def tiny_tmpfs(folder: Path, size: str = "64k", read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (created), unmounted afterwards: a disk that fills up,
    or (``read_only``) one that refuses every write.

    Mounting needs root: the test is skipped otherwise, and fails when the CI variable is set.
    """
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("mounting a tmpfs needs root, and CI must run this test")
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
                   check=True, timeout=10)
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, timeout=10)
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True, check=False, timeout=10).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True, timeout=10)  # still busy: detach it
