"""Compatibility matrix and upload completion, with real clients against one daemon.

Each client uploads a ZIP and exactly one run is recorded for it (any status:
later pipeline stages are not under test here), and the upload leaves the home.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import asyncssh
import pytest

from tests.conftest import Daemon, local_flow, make_keypair, require_tool
from tests.sftp.helpers import (
    SSH_OPTS,
    home_names,
    no_runs_named,
    padded_zip,
    paramiko_client,
    roster_zip,
    run_sha256,
    runs_named,
    sftp_batch,
    sha256_file,
    wait_runs_named,
    wait_until,
)

ACCOUNT = "district-a"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftp-clients")
    flows = local_flow(ACCOUNT, root / "outbox")
    daemon = Daemon(root, flows).start()
    key = make_keypair(root, "tenant_key")
    created = daemon.cli_json("accounts", "create", ACCOUNT, "--public-key", f"{key}.pub")
    yield {"daemon": daemon, "key": key, "password": created["password"], "root": root,
           "fingerprint": created["host_key_fingerprint"]}
    daemon.stop()


def uploaded_once(world, name: str) -> dict:
    daemon = world["daemon"]
    runs = wait_runs_named(daemon, ACCOUNT, name)
    assert name not in home_names(daemon, ACCOUNT)
    return runs[0]


def test_openssh_sftp_with_key(world):
    require_tool("sftp")
    upload = roster_zip(world["root"], "openssh-key.zip")
    # -p sets the times after closing: answered from the remembered attributes of the moved upload
    result = sftp_batch(world["daemon"], ACCOUNT, f"put -p {upload}\n", key=world["key"])
    assert result.returncode == 0, result.stderr
    uploaded_once(world, "openssh-key.zip")


def test_openssh_sftp_with_password(world):
    require_tool("sftp")
    require_tool("sshpass")
    upload = roster_zip(world["root"], "openssh-password.zip")
    result = sftp_batch(world["daemon"], ACCOUNT, f"put {upload}\n", password=world["password"])
    assert result.returncode == 0, result.stderr
    uploaded_once(world, "openssh-password.zip")


def test_curl_with_pinned_host_key(world):
    require_tool("curl")
    upload = roster_zip(world["root"], "curl.zip")
    pin = world["fingerprint"].removeprefix("SHA256:")
    result = subprocess.run(
        ["curl", "-sS", "--hostpubsha256", pin, "-u", f"{ACCOUNT}:{world['password']}", "-T", str(upload),
         f"sftp://127.0.0.1:{world['daemon'].port}/curl.zip"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    uploaded_once(world, "curl.zip")


def test_curl_refuses_a_wrong_host_key_pin(world):
    require_tool("curl")
    upload = roster_zip(world["root"], "curl-wrong-pin.zip")
    result = subprocess.run(
        ["curl", "-sS", "--hostpubsha256", "A" * 43, "-u", f"{ACCOUNT}:{world['password']}", "-T", str(upload),
         f"sftp://127.0.0.1:{world['daemon'].port}/curl-wrong-pin.zip"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    no_runs_named(world["daemon"], ACCOUNT, "curl-wrong-pin.zip", wait=0.5)


def _lftp(world, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["lftp", "-u", f"{ACCOUNT},{world['password']}", "-e",
         "set sftp:auto-confirm yes; set net:max-retries 1; set net:timeout 10; " + script + "; bye",
         f"sftp://127.0.0.1:{world['daemon'].port}"],
        capture_output=True, text=True, timeout=60,
    )


def test_lftp_put(world):
    require_tool("lftp")
    upload = roster_zip(world["root"], "lftp.zip")
    result = _lftp(world, f"put {upload}")
    assert result.returncode == 0, result.stderr
    uploaded_once(world, "lftp.zip")


def test_lftp_with_temp_file_and_rename(world):
    require_tool("lftp")
    upload = roster_zip(world["root"], "lftp-temp.zip")
    result = _lftp(world, f"set xfer:use-temp-file yes; put {upload}")
    assert result.returncode == 0, result.stderr
    uploaded_once(world, "lftp-temp.zip")
    assert not [n for n in home_names(world["daemon"], ACCOUNT) if n.startswith(".in.")]


def _rclone(world, source: Path, target: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, RCLONE_CONFIG="/dev/null")
    obscured = subprocess.run(["rclone", "obscure", world["password"]], capture_output=True, text=True,
                              timeout=30, env=env).stdout.strip()
    env.update(RCLONE_SFTP_HOST="127.0.0.1", RCLONE_SFTP_PORT=str(world["daemon"].port),
               RCLONE_SFTP_USER=ACCOUNT, RCLONE_SFTP_PASS=obscured)
    return subprocess.run(["rclone", "copyto", "--retries", "1", str(source), f":sftp:{target}"],
                          capture_output=True, text=True, timeout=90, env=env)


@pytest.mark.parametrize("size", [100_000, 300_001])
def test_rclone_default_settings_any_size(world, size):
    """rclone 1.60 (pkg/sftp, concurrent writes) with sizes that are not multiples of 32 KiB."""
    require_tool("rclone")
    name = f"rclone-{size}.zip"
    upload = padded_zip(world["root"], name, size)
    assert upload.stat().st_size % 32768
    result = _rclone(world, upload, name)
    assert result.returncode == 0, result.stderr
    assert "BAD_MESSAGE" not in result.stderr
    uploaded_once(world, name)


def test_rclone_partial_name_pattern(world):
    """rclone >= 1.63 uploads to ``NAME.XXXXXX.partial`` and renames (played with OpenSSH sftp)."""
    require_tool("sftp")
    upload = roster_zip(world["root"], "rclone-partial.zip")
    result = sftp_batch(world["daemon"], ACCOUNT,
                        f"put {upload} rclone-partial.zip.a1b2c3.partial\n"
                        "rename rclone-partial.zip.a1b2c3.partial rclone-partial.zip\n", key=world["key"])
    assert result.returncode == 0, result.stderr
    uploaded_once(world, "rclone-partial.zip")


def test_winscp_filepart_pattern(world):
    """WinSCP: upload to ``NAME.filepart``, then rename to the final name."""
    require_tool("sftp")
    upload = roster_zip(world["root"], "winscp.zip")
    daemon = world["daemon"]
    result = sftp_batch(daemon, ACCOUNT, f"put {upload} winscp.zip.filepart\n", key=world["key"])
    assert result.returncode == 0, result.stderr
    no_runs_named(daemon, ACCOUNT, "winscp.zip.filepart", wait=0.5)
    assert "winscp.zip.filepart" in home_names(daemon, ACCOUNT)
    result = sftp_batch(daemon, ACCOUNT, "rename winscp.zip.filepart winscp.zip\n", key=world["key"])
    assert result.returncode == 0, result.stderr
    uploaded_once(world, "winscp.zip")
    assert "winscp.zip.filepart" not in home_names(daemon, ACCOUNT)


def test_paramiko_put_with_size_confirmation(world):
    upload = roster_zip(world["root"], "paramiko.zip")
    client = paramiko_client(world["daemon"], ACCOUNT, password=world["password"])
    try:
        sftp = client.open_sftp()
        attrs = sftp.put(str(upload), "paramiko.zip", confirm=True)  # stats the file after closing it
        assert attrs.st_size == upload.stat().st_size
        sftp.utime("paramiko.zip", (1_700_000_000, 1_700_000_000))  # like WinSCP/rclone setting mtime
        assert sftp.stat("paramiko.zip").st_mtime == 1_700_000_000
    finally:
        client.close()
    uploaded_once(world, "paramiko.zip")


def test_asyncssh_client(world):
    upload = roster_zip(world["root"], "asyncssh.zip")

    async def put() -> None:
        async with asyncssh.connect("127.0.0.1", world["daemon"].port, username=ACCOUNT,
                                    password=world["password"], known_hosts=None,
                                    client_keys=None, connect_timeout=10) as conn:
            async with conn.start_sftp_client() as sftp:
                await sftp.put(str(upload), "asyncssh.zip")

    asyncio.run(asyncio.wait_for(put(), 60))
    uploaded_once(world, "asyncssh.zip")


def test_transfer_and_login_are_logged_without_secrets(world):
    daemon = world["daemon"]
    events = [json.loads(line) for line in daemon.log.read_text().splitlines() if line.startswith("{")]
    transfers = [e for e in events if e.get("event") == "transfer" and e.get("direction") == "upload"]
    assert transfers, "no transfer events"
    first = transfers[0]
    assert {"account", "remote", "bytes", "elapsed_ms", "path", "outcome"} <= set(first)
    assert first["account"] == ACCOUNT and first["remote"].startswith("127.0.0.1:")
    assert world["password"] not in daemon.log.read_text()


# -- completion correctness ------------------------------------------------------------

def test_truncated_zip_starts_no_run_and_stays_for_reput(world):
    require_tool("sftp")
    daemon, root = world["daemon"], world["root"]
    full = padded_zip(root, "truncated.zip", 200_000)
    half = root / "half" / "truncated.zip"
    half.parent.mkdir()
    half.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    result = sftp_batch(daemon, ACCOUNT, f"put {half} truncated.zip\n", key=world["key"])
    assert result.returncode == 0, result.stderr
    no_runs_named(daemon, ACCOUNT, "truncated.zip")
    assert (daemon.home(ACCOUNT) / "truncated.zip").stat().st_size == half.stat().st_size
    result = sftp_batch(daemon, ACCOUNT, f"reput {full} truncated.zip\n", key=world["key"])
    assert result.returncode == 0, result.stderr
    run = uploaded_once(world, "truncated.zip")
    assert run_sha256(daemon, run["id"]) == sha256_file(full)


def test_lftp_put_continue_resumes_a_partial_upload(world):
    require_tool("lftp")
    daemon, root = world["daemon"], world["root"]
    full = padded_zip(root, "lftp-resume.zip", 150_000)
    (daemon.home(ACCOUNT) / "lftp-resume.zip").write_bytes(full.read_bytes()[:60_000])  # left by a dropped upload
    result = _lftp(world, f"put -c {full}")
    assert result.returncode == 0, result.stderr
    run = uploaded_once(world, "lftp-resume.zip")
    assert run_sha256(daemon, run["id"]) == sha256_file(full)


def test_complete_zip_with_a_bad_crc_is_a_rejected_run(world):
    """It is finished (end record and directory sound) but a CRC is wrong: a run, rejected with
    archive.crc_mismatch and a report; the file leaves the home. (Changed on purpose: completeness
    is judged from the directory alone, never by decompressing inside the SFTP server.)"""
    require_tool("sftp")
    daemon, root = world["daemon"], world["root"]
    good = padded_zip(root, "corrupt-src.zip", 50_000)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the stored padding member
    bad = root / "corrupt.zip"
    bad.write_bytes(bytes(data))
    result = sftp_batch(daemon, ACCOUNT, f"put {bad}\n", key=world["key"])
    assert result.returncode == 0, result.stderr
    run = uploaded_once(world, "corrupt.zip")
    assert run_sha256(daemon, run["id"]) == sha256_file(bad)
    daemon.wait_for_runs(1, account=ACCOUNT)  # nothing of this account is still in progress
    shown = daemon.cli_json("runs", "show", run["id"])
    assert shown["status"] == "rejected"
    assert [(i["code"], i["value"]) for i in shown["issues"]] == [("archive.crc_mismatch", "padding.bin")]
    report = daemon.home(ACCOUNT) / "reports" / f"{shown['id']}.txt"
    assert wait_until(report.exists, timeout=10)
    assert "checksum mismatch" in report.read_text()


def test_killed_upload_then_reput_gives_one_run_on_the_whole_file(world):
    """kill -9 of the client mid-transfer: no run, the partial stays; ``reput`` finishes it."""
    require_tool("sftp")
    daemon, root = world["daemon"], world["root"]
    upload = padded_zip(root, "resumed.zip", 3_000_000)
    args = ["sftp", "-q", "-i", str(world["key"]), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-l", "4000", "-P", str(daemon.port), *SSH_OPTS, "-b", "-", f"{ACCOUNT}@127.0.0.1"]
    client = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client.stdin.write(f"put {upload}\n".encode())  # type: ignore[union-attr]
        client.stdin.close()  # type: ignore[union-attr]
        partial = daemon.home(ACCOUNT) / "resumed.zip"
        assert wait_until(lambda: partial.exists() and partial.stat().st_size > 300_000, timeout=20)
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=10)
    time.sleep(1.0)
    size = partial.stat().st_size
    assert 0 < size < upload.stat().st_size
    assert runs_named(daemon, ACCOUNT, "resumed.zip") == []
    result = sftp_batch(daemon, ACCOUNT, f"reput {upload} resumed.zip\n", key=world["key"])
    assert result.returncode == 0, result.stderr
    run = uploaded_once(world, "resumed.zip")
    assert run_sha256(daemon, run["id"]) == sha256_file(upload)


def test_same_name_uploaded_twice_quickly_is_two_runs(world):
    require_tool("sftp")
    daemon = world["daemon"]
    upload = roster_zip(world["root"], "twice.zip")
    result = sftp_batch(daemon, ACCOUNT, f"put {upload}\nput {upload}\n", key=world["key"])
    assert result.returncode == 0, result.stderr
    wait_runs_named(daemon, ACCOUNT, "twice.zip", count=2)


def test_temp_names_and_other_files_start_no_run(world):
    require_tool("sftp")
    daemon, root = world["daemon"], world["root"]
    upload = roster_zip(root, "notes.txt")
    result = sftp_batch(daemon, ACCOUNT, f"put {upload} notes.txt\nput {upload} .in.hidden.zip\n", key=world["key"])
    assert result.returncode == 0, result.stderr
    time.sleep(1.0)
    names = {r["upload_name"] for r in daemon.runs(ACCOUNT)}
    assert not names & {"notes.txt", ".in.hidden.zip"}
    assert {"notes.txt", ".in.hidden.zip"} <= home_names(daemon, ACCOUNT)


def test_close_followed_at_once_by_disconnect_still_counts(world):
    """A client that sends SSH_FXP_CLOSE and hangs up without waiting for the reply: one run.

    The close and the end of the session arrive together; the upload must count (it was
    closed by the client) and must count once.
    """
    import struct

    upload = roster_zip(world["root"], "close-and-go.zip")
    ssh = paramiko_client(world["daemon"], ACCOUNT, password=world["password"])
    try:
        channel = ssh.get_transport().open_session(timeout=10)
        channel.settimeout(10)
        channel.invoke_subsystem("sftp")

        def send(kind: int, body: bytes) -> None:
            channel.sendall(struct.pack(">IB", len(body) + 1, kind) + body)

        def receive() -> bytes:
            header = b""
            while len(header) < 4:
                header += channel.recv(4 - len(header))
            length = struct.unpack(">I", header)[0]
            data = b""
            for _ in range(10_000):
                if len(data) >= length:
                    break
                data += channel.recv(length - len(data))
            return data

        def string(value: bytes) -> bytes:
            return struct.pack(">I", len(value)) + value

        send(1, struct.pack(">I", 3))  # INIT
        receive()
        send(3, struct.pack(">I", 1) + string(b"close-and-go.zip") + struct.pack(">II", 0x1A, 0))  # OPEN w|creat|trunc
        reply = receive()
        assert reply[0] == 102, reply  # SSH_FXP_HANDLE
        handle = reply[9:9 + struct.unpack(">I", reply[5:9])[0]]
        data = upload.read_bytes()
        for index, offset in enumerate(range(0, len(data), 32768)):
            send(6, struct.pack(">I", 10 + index) + string(handle) + struct.pack(">Q", offset)
                 + string(data[offset:offset + 32768]))
            assert receive()[0] == 101  # STATUS ok
        send(4, struct.pack(">I", 99) + string(handle))  # CLOSE, and hang up at once
        channel.close()
    finally:
        ssh.close()
    uploaded_once(world, "close-and-go.zip")
