"""Watch mode: ZIPs that another SFTP server (OpenSSH sshd here) drops into a folder start runs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from rostergate.fstree import remove_tree
from tests.conftest import ONEROSTER_11_VALID, Daemon, OpenSSHDownstream, require_tool, zip_folder

pytestmark = pytest.mark.e2e


def upload_to_sshd(server: OpenSSHDownstream, commands: str) -> None:
    result = subprocess.run(
        ["sftp", "-q", "-i", str(server.client_key), "-P", str(server.port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-b", "-", f"{server.user}@127.0.0.1"],
        input=commands, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory, sshd_factory):
    require_tool("sftp")
    root = tmp_path_factory.mktemp("watch")
    other_server = sshd_factory()
    outbox = root / "outbox"
    flows = (
        "[[flows]]\n"
        'account = "district-b"\n'
        f'watch = "{other_server.dropbox}"\n'
        "watch_settle_seconds = 0.5\n"
        "[flows.downstream]\n"
        f'url = "{outbox.as_uri()}"\n'
    )
    daemon = Daemon(root, flows_toml=flows).start()
    yield daemon, other_server, outbox, root
    daemon.stop()
    other_server.stop()


def test_zip_dropped_by_another_sftp_server_is_taken_and_delivered(world):
    daemon, other, outbox, root = world
    upload = zip_folder(ONEROSTER_11_VALID, root / "roster.zip")
    upload_to_sshd(other, f"put {upload} {other.dropbox}/roster.zip\n")
    runs = daemon.wait_for_runs(1, timeout=30, account="district-b")
    assert [r["status"] for r in runs] == ["delivered"]
    assert not (other.dropbox / "roster.zip").exists()
    assert len(list(outbox.glob("*.zip"))) == 1


def test_truncated_zip_never_starts_a_run(world):
    daemon, other, _, root = world
    before = len(daemon.runs("district-b"))
    whole = zip_folder(ONEROSTER_11_VALID, root / "whole.zip").read_bytes()
    partial = root / "partial.zip"
    partial.write_bytes(whole[: len(whole) // 2])
    upload_to_sshd(other, f"put {partial} {other.dropbox}/partial.zip\n")
    time.sleep(2.5)  # several settle periods
    assert len(daemon.runs("district-b")) == before
    assert (other.dropbox / "partial.zip").exists()  # left alone for the sender to finish


def test_temp_name_counts_only_after_rename(world):
    daemon, other, _, root = world
    before = len(daemon.runs("district-b"))
    upload = zip_folder(ONEROSTER_11_VALID, root / "second.zip")
    upload_to_sshd(other, f"put {upload} {other.dropbox}/second.zip.filepart\n")
    time.sleep(1.5)
    assert len(daemon.runs("district-b")) == before
    upload_to_sshd(other, f"rename {other.dropbox}/second.zip.filepart {other.dropbox}/second.zip\n")
    runs = daemon.wait_for_runs(before + 1, timeout=30, account="district-b")
    assert len(runs) == before + 1


def test_settled_file_that_is_no_zip_gets_a_rejected_run(world):
    """A finished drop that is no ZIP at all is a run rejected with a report, not silence."""
    daemon, other, _, root = world
    before = len(daemon.runs("district-b"))
    text = root / "notes.zip"
    text.write_text("person_id,first_name\n1,Ann\n")
    upload_to_sshd(other, f"put {text} {other.dropbox}/notes.zip\n")
    runs = daemon.wait_for_runs(before + 1, timeout=30, account="district-b")
    run = next(r for r in runs if r["upload_name"] == "notes.zip")
    assert run["status"] == "rejected"
    shown = daemon.cli_json("runs", "show", run["id"])
    assert [i["code"] for i in shown["issues"]] == ["archive.not_a_zip"]


def _plant_deep_tree(folder: Path, levels: int, bottom_zip: bytes, outside: Path) -> None:
    """``d/d/.../d`` ``levels`` deep with a ZIP and a link out at the bottom (pathlib would recurse)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", 0o700, dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        with open(os.open("deep.zip", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "wb") as handle:
            handle.write(bottom_zip)
        os.symlink(outside, "outside-link", dir_fd=fd)
    finally:
        os.close(fd)


def test_a_deep_tree_in_the_inbox_does_not_stop_start_up(tmp_path):
    """Another server's tenant may leave 1,100 nested folders in the inbox, with a link out of it at
    the bottom: the start-up scan copes, and nothing is taken through the link."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    decoy = zip_folder(ONEROSTER_11_VALID, elsewhere / "decoy.zip")
    _plant_deep_tree(inbox, 1_100, zip_folder(ONEROSTER_11_VALID, tmp_path / "deep.zip").read_bytes(), elsewhere)
    zip_folder(ONEROSTER_11_VALID, inbox / "waiting.zip")
    outbox = tmp_path / "outbox"
    flows = (
        '[[flows]]\naccount = "district-c"\n'
        f'watch = "{inbox}"\nwatch_settle_seconds = 0.5\n'
        f'[flows.downstream]\nurl = "{outbox.as_uri()}"\n'
    )
    daemon = Daemon(tmp_path, flows_toml=flows).start()
    try:
        runs = daemon.wait_for_runs(2, timeout=60)  # the ZIP at the top, and the one 1,100 levels down
        assert sorted(r["upload_name"] for r in runs) == ["deep.zip", "waiting.zip"]
        # Both arrive at once: the older may be superseded by the newer before delivery.
        assert sorted(r["status"] for r in runs) in (["delivered", "delivered"], ["delivered", "superseded"])
        assert "RecursionError" not in daemon.log.read_text()
        time.sleep(1.5)  # three settle times: a decoy taken through the link would be gone by now
        assert decoy.exists() and len(daemon.runs()) == 2
    finally:
        daemon.stop()
        remove_tree(inbox / "d")  # inside tmp_path only: pytest's own clean-up of old folders recurses
