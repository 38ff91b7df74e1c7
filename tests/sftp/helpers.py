"""Helpers for the SFTP server tests: real clients against a daemon on 127.0.0.1.

Every wait is bounded in count and time; every client call has a timeout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import paramiko

from tests.conftest import ONEROSTER_11_VALID, Daemon, zip_folder

SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10"]


def roster_zip(folder: Path, name: str = "roster.zip") -> Path:
    return zip_folder(ONEROSTER_11_VALID, folder / name)


def padded_zip(folder: Path, name: str, size: int) -> Path:
    """A valid ZIP of about ``size`` bytes (a stored random member) plus the roster files."""
    import zipfile

    path = folder / name
    with zipfile.ZipFile(path, "w") as archive:
        for member in sorted(ONEROSTER_11_VALID.iterdir()):
            archive.write(member, member.name)
        archive.writestr(zipfile.ZipInfo("padding.bin"), os.urandom(max(0, size - 4096)))
    return path


def sftp_batch(daemon: Daemon, user: str, commands: str, key: Path | None = None, password: str | None = None,
               extra: tuple[str, ...] = (), timeout: float = 60) -> subprocess.CompletedProcess:
    """OpenSSH ``sftp -b -`` with a key or (through sshpass) a password."""
    # ssh keeps the first value of an option and sftp's -b adds BatchMode=yes: ours come first.
    args = ["sftp", "-q", "-P", str(daemon.port), *SSH_OPTS, *extra]
    env = dict(os.environ)
    if key is not None:
        args += ["-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
    if password is not None:
        args = ["sshpass", "-e", *args, "-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"]
        env["SSHPASS"] = password
    args += ["-b", "-", f"{user}@127.0.0.1"]
    return subprocess.run(args, input=commands, capture_output=True, text=True, timeout=timeout, env=env)


def paramiko_client(daemon: Daemon, user: str, password: str | None = None, key: Path | None = None,
                    source: str | None = None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # test only: a fresh host key per run
    sock = None
    if source:
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10, source_address=(source, 0))
    client.connect("127.0.0.1", daemon.port, username=user, password=password,
                   key_filename=str(key) if key else None, look_for_keys=False, allow_agent=False,
                   timeout=10, banner_timeout=10, auth_timeout=15, sock=sock)
    return client


def runs_named(daemon: Daemon, account: str, name: str) -> list[dict]:
    """Runs of ``account`` for upload ``name``, through the CLI (``runs list --json``)."""
    return [r for r in daemon.runs(account) if r["upload_name"] == name]


def count_runs_fast(daemon: Daemon, account: str, name: str) -> int:
    """The same count read straight from the state store (cheap enough to poll)."""
    import sqlite3

    with sqlite3.connect(f"file:{daemon.data_dir / 'rostergate.db'}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute("SELECT COUNT(*) FROM runs WHERE account = ? AND upload_name = ?",
                            (account, name)).fetchone()[0]


def run_sha256(daemon: Daemon, run_id: str) -> str:
    """The SHA-256 the intake recorded for the run's ZIP (read from the state store)."""
    import sqlite3

    with sqlite3.connect(f"file:{daemon.data_dir / 'rostergate.db'}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute("SELECT sha256 FROM runs WHERE id = ?", (run_id,)).fetchone()[0]


def sha256_file(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_runs_named(daemon: Daemon, account: str, name: str, count: int = 1, timeout: float = 20.0,
                    settle: float = 0.5) -> list[dict]:
    """Wait until ``count`` runs exist for ``name``, then make sure no extra one follows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and count_runs_fast(daemon, account, name) < count:
        time.sleep(0.1)
    time.sleep(settle)
    runs = runs_named(daemon, account, name)
    assert len(runs) == count, f"expected {count} run(s) for {name}, got {runs}\n{daemon.log.read_text()[-3000:]}"
    return runs


def no_runs_named(daemon: Daemon, account: str, name: str, wait: float = 1.5) -> None:
    time.sleep(wait)
    assert count_runs_fast(daemon, account, name) == 0


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def home_names(daemon: Daemon, account: str) -> set[str]:
    return {p.name for p in daemon.home(account).iterdir()}
