"""Delivered means verified, through the real daemon: faulty downstreams, a full disk, kill -9, changed bytes.

Every daemon comes from ``daemon_factory``, which stops it even when a test fails.
The daemon (``rostergate serve``) receives uploads from OpenSSH's ``sftp`` and
forwards them to real downstream servers on loopback: an asyncssh server whose
faults the test switches while the daemon runs, or OpenSSH's ``sshd`` writing
into a 64 KiB tmpfs.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import signal
import sqlite3
import string
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ONEROSTER_11_VALID, Daemon, make_keypair, require_tool, tiny_tmpfs, zip_folder
from tests.downstream import AsyncsshDownstream, Faults
from tests.sftp.helpers import sftp_batch, wait_until

pytestmark = pytest.mark.e2e

ACCOUNT = "district-a"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def upload(daemon: Daemon, key: Path, local: Path) -> None:
    result = sftp_batch(daemon, ACCOUNT, f"put {local}\n", key=key)
    assert result.returncode == 0, result.stderr


def started(daemon: Daemon, root: Path) -> Path:
    """Start ``daemon`` and create the account with a key; returns the key."""
    daemon.start()
    key = make_keypair(root, "tenant_key")
    daemon.cli("accounts", "create", ACCOUNT, "--public-key", f"{key}.pub", "--no-password")
    return key


def stored_runs(daemon: Daemon) -> list[dict]:
    """The runs as the state store holds them now (cheap enough to poll; the CLI takes a second)."""
    db = daemon.data_dir / "rostergate.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM runs ORDER BY received_at, id")]


def watch_statuses(daemon: Daemon, run_count: int = 1, timeout: float = 30.0) -> tuple[list[dict], set[str]]:
    """Poll until ``run_count`` runs exist and all are final; returns them and every status seen."""
    final = {"delivered", "rejected", "failed", "discarded", "superseded", "held"}
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = stored_runs(daemon)
        seen.update(r["status"] for r in runs)
        if len(runs) >= run_count and all(r["status"] in final for r in runs):
            return runs, seen
        time.sleep(0.1)
    raise AssertionError(f"runs not final within {timeout}s: {runs}\n{daemon.log.read_text()[-3000:]}")


def report(daemon: Daemon, run_id: str) -> str:
    """The run's report; it is written just after the final status is stored, so wait for it (bounded)."""
    path = daemon.home(ACCOUNT) / "reports" / f"{run_id}.txt"
    assert wait_until(path.exists, timeout=10), f"no report {path.name}\n{daemon.log.read_text()[-3000:]}"
    return path.read_text()


def big_roster(root: Path, students: int) -> Path:
    """The valid fixture plus ``students`` students with random ids and names: an output that does not compress."""
    folder = root / f"big-{students}"
    shutil.copytree(ONEROSTER_11_VALID, folder)
    rng = random.Random(3)

    def word(length: int) -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(length)).capitalize()

    rows = []
    for _ in range(students):
        tag = f"{rng.getrandbits(48):012x}"
        rows.append(f"stu-{tag},,,true,org-hs,student,u{tag},,{word(9)},{word(11)},,{rng.randrange(10**9):09d},"
                    f"u{tag}@example.org,,,,09,")
    with open(folder / "users.csv", "a", encoding="utf-8") as users:
        users.write("\n".join(rows) + "\n")
    return zip_folder(folder, root / f"big-{students}.zip")


@pytest.fixture
def asyncssh_down(tmp_path):
    server = AsyncsshDownstream(tmp_path / "downstream").start()
    yield server
    server.stop()


@pytest.fixture
def tools():
    require_tool("sftp")


# -- a write quota ---------------------------------------------------------------------
def test_write_quota_retries_then_fails_and_is_never_delivered(tmp_path, tools, asyncssh_down, daemon_factory):
    asyncssh_down.faults = Faults(quota_bytes=500)
    # Times are stored to the second: a 2 s delay keeps the run in "retrying" for at least 1 s.
    daemon = daemon_factory(asyncssh_down.flow_toml(ACCOUNT, extra="max_attempts = 2\nretry_base_seconds = 2\n"))
    key = started(daemon, tmp_path)
    upload(daemon, key, zip_folder(ONEROSTER_11_VALID, tmp_path / "roster.zip"))
    (run,), seen = watch_statuses(daemon)
    assert run["status"] == "failed" and "retrying" in seen and "delivered" not in seen
    assert names(asyncssh_down.dropbox) == []  # neither the final name nor a .partial
    assert not (daemon.data_dir / "snapshots" / ACCOUNT).exists()  # the safeguard baseline is untouched

    shown = daemon.cli_json("runs", "show", run["id"])
    assert shown["deliveries"] == [{
        "destination": f"sftp://apple@127.0.0.1:{asyncssh_down.port}/dropbox", "status": "failed", "attempts": 2,
        "remote": f"/dropbox/.{ACCOUNT}-{run['id']}.zip.partial", "size": None, "sha256": None, "finished_at": None,
    }]
    forwards = [s for s in shown["steps"] if s["name"] == "forward"]
    assert [s["status"] for s in forwards] == ["failed", "failed"]
    assert all("Disk quota exceeded" in s["message"] for s in forwards)
    assert "gave up after 2 attempts" in report(daemon, run["id"])
    daemon.stop()


def test_quota_lifted_before_the_retry_delivers_the_checked_bytes(tmp_path, tools, asyncssh_down, daemon_factory):
    asyncssh_down.faults = Faults(quota_bytes=500)
    daemon = daemon_factory(asyncssh_down.flow_toml(ACCOUNT, extra="max_attempts = 5\nretry_base_seconds = 2\n"))
    key = started(daemon, tmp_path)
    local = zip_folder(ONEROSTER_11_VALID, tmp_path / "roster.zip")
    upload(daemon, key, local)
    assert wait_until(lambda: [r["status"] for r in stored_runs(daemon)] == ["retrying"], timeout=30)
    asyncssh_down.faults = Faults()
    (run,), _ = watch_statuses(daemon)
    assert run["status"] == "delivered", daemon.log.read_text()[-3000:]

    shown = daemon.cli_json("runs", "show", run["id"])
    assert shown["sha256"] == sha256(local)  # the upload that was validated is the one sent
    delivered = asyncssh_down.dropbox / f"{ACCOUNT}-{run['id']}.zip"
    assert names(asyncssh_down.dropbox) == [delivered.name]
    (receipt,) = shown["deliveries"]
    assert receipt["status"] == "delivered" and receipt["attempts"] == 2
    assert receipt["remote"] == f"/dropbox/{delivered.name}"
    assert (receipt["sha256"], receipt["size"]) == (sha256(delivered), delivered.stat().st_size)
    assert receipt["sha256"] == run["output_sha256"] and receipt["finished_at"].endswith("Z")
    # Now, and only now, the delivered ZIP is the account's safeguard baseline.
    assert sha256(daemon.data_dir / "snapshots" / ACCOUNT / "last-delivered.zip") == receipt["sha256"]
    daemon.stop()


# -- a full disk on a real OpenSSH server ----------------------------------------------
def test_openssh_downstream_with_a_full_disk_never_delivers(tmp_path, tools, daemon_factory, sshd_factory):
    sshd = sshd_factory(start=False)  # started once its drop box is the tiny disk
    local = big_roster(tmp_path, 2500)  # its ASM output is about 100 KB, more than the 64 KiB disk
    with tiny_tmpfs(sshd.dropbox, "64k"):
        sshd.start()
        daemon = daemon_factory(sshd.flow_toml(ACCOUNT, extra="max_attempts = 2\nretry_base_seconds = 0.3\n"))
        try:
            key = started(daemon, tmp_path)
            upload(daemon, key, local)
            (run,), seen = watch_statuses(daemon, timeout=40)
            assert run["status"] == "failed" and "delivered" not in seen, daemon.log.read_text()[-3000:]
            assert names(sshd.dropbox) == []  # nothing under the final name, no .partial left
            forwards = [s for s in daemon.cli_json("runs", "show", run["id"])["steps"] if s["name"] == "forward"]
            assert forwards and all("disk may be full" in s["message"] for s in forwards), forwards
            assert not (daemon.data_dir / "snapshots" / ACCOUNT).exists()
        finally:
            daemon.stop()  # before the unmount; daemon_factory stops it again (a no-op) otherwise
            sshd.stop()


# -- kill -9 in the middle of a delivery -----------------------------------------------
def test_kill_9_mid_delivery_leaves_only_the_partial_and_the_restart_delivers(tmp_path, tools, asyncssh_down,
                                                                            daemon_factory):
    asyncssh_down.faults = Faults(write_delay=60)  # each WRITE is held until the test lowers the delay
    daemon = daemon_factory(asyncssh_down.flow_toml(ACCOUNT))
    key = started(daemon, tmp_path)
    upload(daemon, key, zip_folder(ONEROSTER_11_VALID, tmp_path / "roster.zip"))
    assert wait_until(lambda: asyncssh_down.held > 0, timeout=30), daemon.log.read_text()[-3000:]
    (run,) = stored_runs(daemon)
    final, partial = f"{ACCOUNT}-{run['id']}.zip", f".{ACCOUNT}-{run['id']}.zip.partial"

    daemon.stop(sig=signal.SIGKILL)
    assert names(asyncssh_down.dropbox) == [partial]
    with sqlite3.connect(f"file:{daemon.data_dir / 'rostergate.db'}?mode=ro", uri=True, timeout=10) as conn:
        attempt = conn.execute("SELECT status, remote FROM deliveries WHERE run_id = ?", (run["id"],)).fetchall()
    assert attempt == [("sending", f"/dropbox/{partial}")]  # what the restart knows a crash may have left

    asyncssh_down.faults = Faults()
    daemon.start()
    (run,), _ = watch_statuses(daemon)
    assert run["status"] == "delivered", daemon.log.read_text()[-3000:]
    assert names(asyncssh_down.dropbox) == [final]
    (receipt,) = daemon.cli_json("runs", "show", run["id"])["deliveries"]
    assert receipt["status"] == "delivered"
    assert receipt["sha256"] == sha256(asyncssh_down.dropbox / final) == run["output_sha256"]
    with zipfile.ZipFile(asyncssh_down.dropbox / final) as archive:
        assert archive.testzip() is None and "students.csv" in archive.namelist()
    daemon.stop()


# -- the upload changed after intake ---------------------------------------------------
def test_spooled_upload_modified_after_intake_fails_the_run(tmp_path, tools, asyncssh_down, daemon_factory):
    """A first run held in its delivery keeps the account busy, so the second waits as received; then it changes."""
    asyncssh_down.faults = Faults(write_delay=60)
    daemon = daemon_factory(asyncssh_down.flow_toml(ACCOUNT))
    key = started(daemon, tmp_path)
    upload(daemon, key, zip_folder(ONEROSTER_11_VALID, tmp_path / "first.zip"))
    assert wait_until(lambda: asyncssh_down.held > 0, timeout=30), daemon.log.read_text()[-3000:]
    upload(daemon, key, zip_folder(ONEROSTER_11_VALID, tmp_path / "second.zip"))
    assert wait_until(lambda: len(stored_runs(daemon)) == 2, timeout=20)
    second = next(r for r in stored_runs(daemon) if r["upload_name"] == "second.zip")
    assert second["status"] == "received"
    spooled = Path(second["spool_path"])
    assert spooled.stat().st_mode & 0o777 == 0o400
    # Still a valid roster, so only the recorded SHA-256 can tell: the same files, stored instead of deflated.
    spooled.chmod(0o600)
    with zipfile.ZipFile(spooled, "w", zipfile.ZIP_STORED) as archive:
        for member in sorted(ONEROSTER_11_VALID.iterdir()):
            archive.write(member, member.name)
    assert sha256(spooled) != second["sha256"]

    asyncssh_down.faults = Faults()
    runs, _ = watch_statuses(daemon, run_count=2)
    by_name = {r["upload_name"]: r for r in runs}
    assert by_name["first.zip"]["status"] == "delivered"
    assert by_name["second.zip"]["status"] == "failed"
    shown = daemon.cli_json("runs", "show", second["id"])
    assert shown["deliveries"] == []
    assert shown["steps"][0]["name"] == "unpack" and shown["steps"][0]["status"] == "failed"
    assert "the upload changed after it was received" in report(daemon, second["id"])
    assert names(asyncssh_down.dropbox) == [f"{ACCOUNT}-{by_name['first.zip']['id']}.zip"]
    daemon.stop()


# -- a credential file removed after start -----------------------------------------------
def test_password_file_removed_after_start_gives_a_clear_failure(tmp_path, tools, asyncssh_down, daemon_factory):
    daemon = daemon_factory(asyncssh_down.flow_toml(ACCOUNT, extra="max_attempts = 1\n"))
    key = started(daemon, tmp_path)  # the configuration was checked with the file present
    asyncssh_down.password_file.unlink()
    upload(daemon, key, zip_folder(ONEROSTER_11_VALID, tmp_path / "roster.zip"))
    (run,), _ = watch_statuses(daemon)
    assert run["status"] == "failed"
    text = report(daemon, run["id"])
    assert "cannot read flows.downstream.password_file" in text and "No such file or directory" in text
    assert "internal error" not in text
    assert "run_internal_error" not in daemon.log.read_text()
    assert asyncssh_down.requests == []
    daemon.stop()
