"""Attributes through SFTP: sizes and times of the tenant's own files only.

``setstat``, ``lsetstat`` and ``fsetstat`` act on a checked descriptor: a file
hard-linked into another tenant's home (planted on disk before the daemon
started), a report in ``reports/``, a symlink, the home itself, and any file
through a handle opened for reading are refused; permissions are never changed.
The tenant's own files and folders still take new times and sizes.
"""

from __future__ import annotations

import asyncio
import os
import stat

import asyncssh
import paramiko
import pytest

from tests.conftest import Daemon, local_flow
from tests.sftp.helpers import paramiko_client

A, B = "district-a", "district-b"
OLD = 1_600_000_000  # the planted files' times
NEW = 1_700_000_000


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftp-attributes")
    daemon = Daemon(root, local_flow(A, root / "outbox-a") + local_flow(B, root / "outbox-b"))
    password = daemon.cli_json("accounts", "create", A)["password"]
    daemon.cli_json("accounts", "create", B)
    home_a, home_b = daemon.home(A), daemon.home(B)
    victim = home_b / "students.csv"
    victim.write_text("sourcedId,givenName\n1,Ada\n")
    os.link(victim, home_a / "linked.csv")  # e.g. made by an operator's script; nlink is now 2
    report = home_a / "reports" / "run-report.txt"
    report.write_text("run rejected: 3 issues\n")
    (home_a / "report-link").symlink_to("reports/run-report.txt")  # a link inside the home
    for path in (victim, report):
        os.utime(path, (OLD, OLD))
    daemon.start()
    yield {"daemon": daemon, "password": password, "victim": victim, "report": report, "home": home_a}
    daemon.stop()


def sftp_session(world) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
    ssh = paramiko_client(world["daemon"], A, password=world["password"])
    return ssh, ssh.open_sftp()


def with_asyncssh(world, action):
    """Run ``await action(sftp)`` in an asyncssh SFTP session (it can send lsetstat@openssh.com)."""
    async def main():
        async with asyncssh.connect("127.0.0.1", world["daemon"].port, username=A, password=world["password"],
                                    known_hosts=None, client_keys=None, connect_timeout=10) as conn:
            async with conn.start_sftp_client() as sftp:
                return await action(sftp)

    return asyncio.run(asyncio.wait_for(main(), 30))


def _metadata(path) -> tuple[float, int, int]:
    """mtime, ctime (any truncate or utime moves it) and size; reading moves neither."""
    info = os.stat(path)
    return info.st_mtime, info.st_ctime_ns, info.st_size


def test_hard_link_into_another_home_cannot_be_truncated_or_retimed(world):
    victim, text = world["victim"], world["victim"].read_text()
    before = _metadata(victim)
    ssh, sftp = sftp_session(world)
    try:
        for change in (lambda: sftp.truncate("linked.csv", 0), lambda: sftp.truncate("linked.csv", 10_000),
                       lambda: sftp.utime("linked.csv", (NEW, NEW)), lambda: sftp.open("linked.csv", "r+"),
                       lambda: sftp.open("linked.csv", "w")):
            with pytest.raises(IOError):
                change()
    finally:
        ssh.close()

    async def lsetstat(sftp):
        for attrs in (asyncssh.SFTPAttrs(size=0), asyncssh.SFTPAttrs(atime=NEW, mtime=NEW)):
            with pytest.raises(asyncssh.SFTPError):
                await sftp.setstat("linked.csv", attrs, follow_symlinks=False)

    with_asyncssh(world, lsetstat)
    assert _metadata(victim) == before and before[0] == OLD
    assert victim.read_text() == text
    assert os.stat(victim).st_nlink == 2


def test_a_report_cannot_be_retimed_or_resized_by_any_means(world):
    report, text = world["report"], world["report"].read_text()
    before = _metadata(report)
    ssh, sftp = sftp_session(world)
    try:
        with pytest.raises(IOError, match="read-only"):
            sftp.utime("reports/run-report.txt", (NEW, NEW))
        with pytest.raises(IOError, match="read-only"):
            sftp.truncate("reports/run-report.txt", 0)
        with pytest.raises(IOError, match="read-only"):
            sftp.utime("report-link", (NEW, NEW))  # through a link inside the home: the target is judged
        with sftp.open("reports/run-report.txt", "r") as handle:
            assert handle.read() == text.encode()  # reading is fine
            with pytest.raises(IOError, match="opened for reading"):
                handle.utime((NEW, NEW))  # SSH_FXP_FSETSTAT on a read handle
            with pytest.raises(IOError, match="opened for reading"):
                handle.truncate(0)
        with pytest.raises(IOError):
            sftp.utime("reports", (NEW, NEW))
    finally:
        ssh.close()

    async def lsetstat(sftp):
        for path in ("reports/run-report.txt", "report-link"):
            with pytest.raises(asyncssh.SFTPError):
                await sftp.setstat(path, asyncssh.SFTPAttrs(atime=NEW, mtime=NEW), follow_symlinks=False)

    with_asyncssh(world, lsetstat)
    assert _metadata(report) == before and before[0] == OLD
    assert report.read_text() == text
    assert os.path.islink(world["home"] / "report-link")


def test_the_home_and_folder_sizes_cannot_be_set(world):
    ssh, sftp = sftp_session(world)
    try:
        sftp.mkdir("folder")
        with pytest.raises(IOError):
            sftp.truncate("folder", 0)
        with pytest.raises(IOError):
            sftp.utime("/", (NEW, NEW))
        sftp.utime("folder", (NEW, NEW))  # the tenant's own folder takes new times
        assert sftp.stat("folder").st_mtime == NEW
    finally:
        ssh.close()


def test_own_files_take_new_times_and_sizes_but_never_new_permissions(world):
    home = world["home"]
    ssh, sftp = sftp_session(world)
    try:
        with sftp.open("notes.txt", "w") as handle:
            handle.write(b"0123456789")
        sftp.utime("notes.txt", (NEW, NEW))
        assert sftp.stat("notes.txt").st_mtime == NEW
        sftp.truncate("notes.txt", 4)
        assert sftp.stat("notes.txt").st_size == 4
        sftp.truncate("notes.txt", 100)
        assert sftp.stat("notes.txt").st_size == 100
        with sftp.open("notes.txt", "r+") as handle:  # SSH_FXP_FSETSTAT on a write handle
            handle.truncate(7)
            handle.utime((NEW + 5, NEW + 5))
        assert (sftp.stat("notes.txt").st_mtime, sftp.stat("notes.txt").st_size) == (NEW + 5, 7)
        sftp.chmod("notes.txt", 0o777)  # accepted and ignored: files stay owner-only
    finally:
        ssh.close()
    info = os.stat(home / "notes.txt")
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_size == 7 and info.st_mtime == NEW + 5
    assert (home / "notes.txt").read_bytes() == b"0123\0\0\0"

    async def lsetstat(sftp):
        await sftp.setstat("notes.txt", asyncssh.SFTPAttrs(atime=NEW, mtime=NEW), follow_symlinks=False)
        return (await sftp.stat("notes.txt")).mtime

    assert with_asyncssh(world, lsetstat) == NEW
