"""What is validated is what is delivered: a file still open for writing cannot be renamed.

A client that writes ``roster.tmp``, keeps the handle open and renames the file
to ``roster.zip`` could otherwise go on writing the staged upload (the handle
still reaches its inode) after the intake hashed and the pipeline validated it.
The server refuses such a rename ("close the file before renaming it"), for
rename and posix-rename, from the same session or another one. If a rename were
ever accepted, the tests still demand that the delivered bytes are the ones the
run recorded. The usual client patterns (WinSCP's ``.filepart``) keep working.
"""

from __future__ import annotations

import hashlib
import time

import paramiko
import pytest

from tests.conftest import Daemon, local_flow
from tests.sftp.helpers import (
    count_runs_fast,
    paramiko_client,
    roster_zip,
    run_sha256,
    sha256_file,
    wait_runs_named,
    wait_until,
)

A = "district-a"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftp-open-writers")
    daemon = Daemon(root, local_flow(A, root / "outbox")).start()
    password = daemon.cli_json("accounts", "create", A)["password"]
    good = roster_zip(root).read_bytes()
    yield {"daemon": daemon, "password": password, "root": root, "good": good, "outbox": root / "outbox"}
    daemon.stop()


def client(world) -> paramiko.SSHClient:
    return paramiko_client(world["daemon"], A, password=world["password"])


def _final_run(world, name: str, timeout: float = 40.0) -> dict:
    """The one run of upload ``name`` once it is final, as ``runs show --json`` tells it."""
    daemon = world["daemon"]
    [run] = wait_runs_named(daemon, A, name, timeout=timeout)
    deadline = time.monotonic() + timeout
    while run["status"] in ("received", "processing") and time.monotonic() < deadline:
        time.sleep(0.3)
        run = daemon.cli_json("runs", "show", run["id"])
    return daemon.cli_json("runs", "show", run["id"])


def _assert_delivered_what_was_recorded(world, run: dict) -> None:
    """Whatever happened to the upload, a delivered file is byte for byte the one the run recorded."""
    for delivery in run.get("deliveries", []):
        if delivery["status"] == "delivered":
            delivered = world["outbox"] / f"{A}-{run['id']}.zip"
            assert sha256_file(delivered) == delivery["sha256"], run


@pytest.mark.parametrize("how", ["rename", "posix-rename", "rename-from-another-session"])
def test_renaming_a_file_still_open_for_writing_is_refused(world, how):
    daemon, good = world["daemon"], world["good"]
    temp, final = f"{how}.tmp", f"{how}.zip"
    ssh = client(world)
    other = client(world) if how == "rename-from-another-session" else ssh
    try:
        sftp = ssh.open_sftp()
        renamer = other.open_sftp()
        handle = sftp.open(temp, "w")
        handle.write(good)
        handle.flush()
        try:
            if how == "posix-rename":
                renamer.posix_rename(temp, final)
            else:
                renamer.rename(temp, final)
            accepted = True
        except OSError as exc:
            accepted = False
            assert "close the file before renaming it" in str(exc)
        if accepted:  # never with this server: then the bytes written from now on must not be delivered
            handle.seek(0)
            handle.write(b"PK\x03\x04" + b"\xff" * (len(good) - 4))
            handle.close()
            try:
                run = _final_run(world, final, timeout=15)
            except AssertionError:  # no run (the overwritten ZIP may look unfinished)
                run = {"status": "none"}
            _assert_delivered_what_was_recorded(world, run)
            pytest.fail(f"a rename of a file open for writing was accepted (run: {run['status']})")
        time.sleep(0.5)
        assert count_runs_fast(daemon, A, final) == 0
        assert temp in sftp.listdir("/") and final not in sftp.listdir("/")
        handle.write(b"")  # the handle still works: the refusal closed nothing
        handle.close()
        renamer.rename(temp, final)  # closed: the same rename is accepted and completes the upload
    finally:
        ssh.close()
        other.close()
    run = _final_run(world, final)
    assert run["sha256"] == hashlib.sha256(good).hexdigest() == run_sha256(daemon, run["id"])
    assert run["status"] == "delivered", run
    _assert_delivered_what_was_recorded(world, run)


def test_three_tries_on_one_handle_are_all_refused(world):
    """The refusal holds however often it is asked, and the file stays in the home untouched."""
    daemon, good = world["daemon"], world["good"]
    ssh = client(world)
    try:
        sftp = ssh.open_sftp()
        handle = sftp.open("roster.tmp", "w")
        handle.write(good)
        handle.flush()
        for attempt in range(3):
            with pytest.raises(IOError, match="close the file before renaming it"):
                (sftp.rename if attempt % 2 == 0 else sftp.posix_rename)("roster.tmp", "roster.zip")
        handle.close()
        with sftp.open("roster.tmp", "r") as check:
            assert check.read() == good
        sftp.remove("roster.tmp")
    finally:
        ssh.close()
    time.sleep(0.5)
    assert count_runs_fast(daemon, A, "roster.zip") == 0


def test_a_second_writer_keeps_the_upload_from_completing(world):
    """Closing one of two write handles on ``*.zip`` is no completion; the last close is, with the
    bytes as they are then."""
    daemon, good = world["daemon"], world["good"]
    ssh = client(world)
    try:
        sftp = ssh.open_sftp()
        first = sftp.open("two.zip", "w")
        first.write(b"not the roster yet")
        second = sftp.open("two.zip", "r+")
        first.close()
        time.sleep(0.5)
        assert count_runs_fast(daemon, A, "two.zip") == 0 and "two.zip" in sftp.listdir("/")
        second.write(good)
        second.close()
    finally:
        ssh.close()
    run = _final_run(world, "two.zip")
    assert run_sha256(daemon, run["id"]) == hashlib.sha256(good).hexdigest() and run["status"] == "delivered", run
    _assert_delivered_what_was_recorded(world, run)


def test_winscp_filepart_pattern_still_gives_exactly_one_run(world):
    daemon, good = world["daemon"], world["good"]
    ssh = client(world)
    try:
        sftp = ssh.open_sftp()
        with sftp.open("winscp.zip.filepart", "w") as handle:
            handle.write(good)
        time.sleep(0.3)
        assert count_runs_fast(daemon, A, "winscp.zip") == 0
        sftp.rename("winscp.zip.filepart", "winscp.zip")
        sftp.utime("winscp.zip", (1_700_000_000, 1_700_000_000))  # WinSCP sets the time right after
        assert sftp.stat("winscp.zip").st_size == len(good)  # answered from the remembered attributes
    finally:
        ssh.close()
    run = _final_run(world, "winscp.zip")
    assert run_sha256(daemon, run["id"]) == hashlib.sha256(good).hexdigest() and run["status"] == "delivered", run
    _assert_delivered_what_was_recorded(world, run)
    assert wait_until(lambda: count_runs_fast(daemon, A, "winscp.zip") == 1, timeout=2)
