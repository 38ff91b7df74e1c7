"""Watch mode: ZIPs that another SFTP server (OpenSSH sshd here) drops into a folder start runs."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import ONEROSTER_11_VALID, Daemon, require_tool, zip_folder
from tests.downstream import OpenSSHDownstream

pytestmark = pytest.mark.e2e


def upload_to_sshd(server: OpenSSHDownstream, commands: str) -> None:
    result = subprocess.run(
        ["sftp", "-q", "-i", str(server.client_key), "-P", str(server.port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-b", "-", f"{server.user}@127.0.0.1"],
        input=commands, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_tool("sftp")
    require_tool("sshd")
    root = tmp_path_factory.mktemp("watch")
    other_server = OpenSSHDownstream(root / "other-sftp").start()
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
