"""What a tenant may store: bytes over the whole home, entries, folder depth, names.

``[server.limits]`` ``max_account_bytes`` counts every file of the home outside
``reports/`` by its extent (a sparse write or a ``setstat`` size counts in full)
plus 4 KiB per folder; ``max_account_entries`` counts files and folders;
``max_folder_depth`` and ``max_name_bytes`` bound what can be created, and
control characters never appear in a new name. Each refusal says why. Every
account here has its own home so that the tests do not share a usage.
"""

from __future__ import annotations

import time

import paramiko
import pytest

from tests.conftest import Daemon, local_flow
from tests.sftp.helpers import count_runs_fast, padded_zip, paramiko_client, sftp_batch, wait_until

QUOTA = 300_000
ACCOUNTS = ("quota", "sparse", "grow", "entries", "depth", "names", "frees", "planted", "bigger", "orphans")
LIMITS = f"""
[server.limits]
max_upload_bytes = 10000000
max_account_bytes = {QUOTA}
max_account_entries = 12
max_folder_depth = 3
max_name_bytes = 40
[server.limits.accounts.bigger]
max_account_bytes = 900000
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftp-storage")
    flows = "".join(local_flow(name, root / f"outbox-{name}") for name in ACCOUNTS)
    daemon = Daemon(root, flows, LIMITS)
    passwords = {}
    for name in ACCOUNTS:
        passwords[name] = daemon.cli_json("accounts", "create", name)["password"]
    # Planted before the daemon starts: measured at the account's first session; reports/ is not counted.
    (daemon.home("planted") / "old-export.csv").write_bytes(b"x" * 250_000)
    (daemon.home("planted") / "reports" / "big-report.txt").write_bytes(b"r" * 400_000)
    daemon.start()
    yield {"daemon": daemon, "passwords": passwords, "root": root}
    daemon.stop()


class Session:
    """A paramiko SFTP session of one account, closed on exit."""

    def __init__(self, world, account: str):
        self.ssh = paramiko_client(world["daemon"], account, password=world["passwords"][account])
        self.sftp = self.ssh.open_sftp()

    def __enter__(self) -> paramiko.SFTPClient:
        return self.sftp

    def __exit__(self, *exc) -> None:
        self.ssh.close()


def put_bytes(sftp: paramiko.SFTPClient, name: str, size: int) -> None:
    with sftp.open(name, "w") as handle:  # not pipelined: each 32 KiB write's status is checked
        handle.write(b"\0" * size)


def test_quota_holds_across_many_files_and_removing_frees_it(world):
    with Session(world, "quota") as sftp:
        for i in range(4):
            put_bytes(sftp, f"part-{i}.csv", 60_000)  # 240,000 stored
        with pytest.raises(IOError, match=f"quota exceeded: this account may store at most {QUOTA} bytes"):
            put_bytes(sftp, "part-4.csv", 80_000)  # the second 32 KiB write would pass 300,000
        assert sftp.stat("part-4.csv").st_size == 32_768  # what was accepted stays and counts
        with pytest.raises(IOError, match="quota exceeded"):
            put_bytes(sftp, "part-5.csv", 30_000)
        sftp.remove("part-4.csv")
        sftp.remove("part-5.csv")
        put_bytes(sftp, "part-4.csv", 60_000)  # exactly the quota now
        with pytest.raises(IOError, match="quota exceeded"):
            put_bytes(sftp, "one-more.csv", 1)
        sftp.remove("part-0.csv")
        put_bytes(sftp, "one-more.csv", 1)


def test_sparse_write_counts_its_whole_extent(world):
    with Session(world, "sparse") as sftp:
        with sftp.open("holes.bin", "w") as handle:
            handle.seek(QUOTA)  # one byte at the end of the quota: 300,001 bytes of extent
            with pytest.raises(IOError, match="quota exceeded"):
                handle.write(b"x")
                handle.flush()
        assert sftp.stat("holes.bin").st_size == 0
        with sftp.open("holes.bin", "w") as handle:
            handle.seek(200_000)
            handle.write(b"x")
        assert sftp.stat("holes.bin").st_size == 200_001
        with pytest.raises(IOError, match="quota exceeded"):
            put_bytes(sftp, "more.bin", 100_000)  # 200,001 + 100,000 > 300,000 though few blocks are used


def test_a_file_still_written_cannot_leave_the_home_and_the_quota(world):
    """Removed or replaced while a handle writes it, a file's bytes would stay on disk, out of
    the home's count, and the handle could grow them: 64 handles x 8 sessions x the quota."""
    with Session(world, "orphans") as sftp:
        handle = sftp.open("held.csv", "w")
        handle.write(b"\0" * 250_000)
        handle.flush()
        with pytest.raises(IOError, match="remove refused: close the file before removing it"):
            sftp.remove("held.csv")
        put_bytes(sftp, "other.csv", 10)
        with pytest.raises(IOError, match="the file it would replace is still open for writing"):
            sftp.posix_rename("other.csv", "held.csv")
        with pytest.raises(IOError, match="quota exceeded"):
            put_bytes(sftp, "second.csv", 60_000)  # the held bytes still count
        handle.close()
        sftp.remove("held.csv")
        put_bytes(sftp, "second.csv", 250_000)
        assert sorted(sftp.listdir("/")) == ["other.csv", "reports", "second.csv"]


def test_setstat_growth_is_refused_and_shrinking_gives_bytes_back(world):
    with Session(world, "grow") as sftp:
        put_bytes(sftp, "grown.csv", 1000)
        with pytest.raises(IOError, match="quota exceeded"):
            sftp.truncate("grown.csv", 1_000_000)  # SSH_FXP_SETSTAT with a size
        with sftp.open("grown.csv", "r+") as handle:
            with pytest.raises(IOError, match="quota exceeded"):
                handle.truncate(QUOTA + 1)  # SSH_FXP_FSETSTAT
        assert sftp.stat("grown.csv").st_size == 1000
        sftp.truncate("grown.csv", 250_000)  # within the quota: allowed, and counted
        assert sftp.stat("grown.csv").st_size == 250_000
        with pytest.raises(IOError, match="quota exceeded"):
            put_bytes(sftp, "other.csv", 60_000)
        sftp.truncate("grown.csv", 10)
        put_bytes(sftp, "other.csv", 60_000)


def test_entry_limit_counts_files_and_folders(world):
    with Session(world, "entries") as sftp:
        sftp.mkdir("folder")
        for i in range(11):
            put_bytes(sftp, f"folder/f{i}.txt" if i % 2 else f"f{i}.txt", 1)
        with pytest.raises(IOError, match="at most 12 files and folders"):
            put_bytes(sftp, "f11.txt", 1)
        with pytest.raises(IOError, match="at most 12 files and folders"):
            sftp.mkdir("another")
        put_bytes(sftp, "f0.txt", 5)  # rewriting an existing file is no new entry
        sftp.remove("f0.txt")
        sftp.mkdir("another")


def test_folders_deeper_than_the_limit_are_refused(world):
    with Session(world, "depth") as sftp:
        sftp.mkdir("a")
        sftp.mkdir("a/b")
        sftp.mkdir("a/b/c")
        with pytest.raises(IOError, match="nested at most 3 levels deep"):
            sftp.mkdir("a/b/c/d")
        put_bytes(sftp, "a/b/c/file.txt", 1)  # a file in the deepest folder is fine
        sftp.mkdir("x")
        sftp.mkdir("x/y")
        with pytest.raises(IOError, match="nested at most 3 levels deep"):
            sftp.rename("x", "a/b/x")  # would put y at level 4
        sftp.rename("x", "a/x")  # y at level 3
        assert sftp.listdir("a/x") == ["y"]


def test_long_names_and_control_characters_are_refused(world):
    ok, long = "n" * 36 + ".txt", "n" * 37 + ".txt"  # 40 and 41 bytes
    with Session(world, "names") as sftp:
        put_bytes(sftp, ok, 1)
        with pytest.raises(IOError, match="at most 40 bytes long"):
            put_bytes(sftp, long, 1)
        with pytest.raises(IOError, match="at most 40 bytes long"):
            sftp.mkdir("d" * 41)
        with pytest.raises(IOError, match="at most 40 bytes long"):
            sftp.rename(ok, long)
        for bad in ("new\nline.txt", "tab\t.txt", "bell\x07.zip", "del\x7f.txt", "esc\x1b[31m.txt"):
            with pytest.raises(IOError, match="control characters"):
                put_bytes(sftp, bad, 1)
            with pytest.raises(IOError, match="control characters"):
                sftp.mkdir(bad)
            with pytest.raises(IOError, match="control characters"):
                sftp.rename(ok, bad)
        assert sorted(sftp.listdir("/")) == sorted(["reports", ok])


def test_a_finished_upload_frees_its_quota(world):
    daemon, root = world["daemon"], world["root"]
    upload = padded_zip(root, "frees.zip", 200_000)
    for round_ in range(2):  # together 400,000 bytes: only possible if the first one freed its bytes
        with Session(world, "frees") as sftp:
            sftp.put(str(upload), f"roster-{round_}.zip")
        assert wait_until(lambda n=round_: count_runs_fast(daemon, "frees", f"roster-{n}.zip") == 1, timeout=15)
    with Session(world, "frees") as sftp:
        put_bytes(sftp, "after.csv", 250_000)
        assert sorted(sftp.listdir("/")) == ["after.csv", "reports"]


def test_what_was_stored_before_the_session_counts_but_reports_do_not(world):
    with Session(world, "planted") as sftp:
        put_bytes(sftp, "small.csv", 40_000)  # 290,000 with the planted file; the 400,000 report is free
        with pytest.raises(IOError, match="quota exceeded"):
            put_bytes(sftp, "big.csv", 40_000)


def test_per_account_override_and_openssh_shows_the_reason(world, tmp_path):
    daemon = world["daemon"]
    with Session(world, "bigger") as sftp:
        put_bytes(sftp, "large.csv", 800_000)
    local = tmp_path / "extra.csv"
    local.write_bytes(b"y" * 200_000)
    result = sftp_batch(daemon, "bigger", f"put {local} extra.csv\n", password=world["passwords"]["bigger"])
    assert result.returncode != 0
    assert "quota exceeded: this account may store at most 900000 bytes" in result.stderr
    time.sleep(0.2)
