"""Confinement: ``..``, absolute paths, symlinks and hard links never leave the account's home.

Links that already exist in the home (put there from outside, as a careless
operator or another program might) are planted by the test itself; tenants
cannot create any.
"""

from __future__ import annotations

import os
import stat

import paramiko
import pytest

from tests.conftest import Daemon, local_flow, make_keypair, require_tool
from tests.sftp.helpers import paramiko_client, roster_zip, sftp_batch

A, B = "district-a", "district-b"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftp-confinement")
    daemon = Daemon(root, local_flow(A, root / "outbox-a") + local_flow(B, root / "outbox-b")).start()
    key = make_keypair(root, "tenant_key")
    password = daemon.cli_json("accounts", "create", A, "--public-key", f"{key}.pub")["password"]
    daemon.cli_json("accounts", "create", B)
    home_a, home_b = daemon.home(A), daemon.home(B)
    (home_b / "secret-b.txt").write_text("district b only")
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for tenants")
    os.symlink("/etc", home_a / "etc-link")
    os.symlink(outside / "secret.txt", home_a / "file-link")
    os.symlink(home_b, home_a / "b-link")
    os.symlink("../" + B, home_a / "relative-b-link")
    os.link(outside / "secret.txt", home_a / "hard-link")
    (home_a / "inner").mkdir()
    (home_a / "inner" / "mine.txt").write_text("mine")
    os.symlink("inner", home_a / "inner-link")  # stays inside: allowed
    client = paramiko_client(daemon, A, password=password)
    sftp = client.open_sftp()
    yield {"daemon": daemon, "sftp": sftp, "key": key, "root": root, "outside": outside}
    client.close()
    daemon.stop()


def denied(call, *args) -> None:
    with pytest.raises((IOError, OSError, paramiko.SFTPError)):
        call(*args)


def test_root_and_dotdot_show_only_the_own_home(world):
    sftp = world["sftp"]
    own = set(sftp.listdir("/"))
    assert "reports" in own and B not in own and "secret-b.txt" not in own
    assert set(sftp.listdir("..")) == own
    assert set(sftp.listdir("/../../..")) == own
    assert sftp.normalize("../../..") == "/"
    assert sftp.normalize(".") == "/"


def test_absolute_and_dotdot_paths_cannot_reach_others(world):
    sftp = world["sftp"]
    for path in ("/etc/passwd", "../district-b/secret-b.txt", "/../district-b/secret-b.txt",
                 "../../homes/district-b/secret-b.txt", str(world["daemon"].home(B) / "secret-b.txt")):
        denied(sftp.open, path)
        denied(sftp.stat, path)


def test_existing_symlinks_pointing_outside_are_not_followed(world):
    sftp = world["sftp"]
    for path in ("etc-link/passwd", "b-link/secret-b.txt", "relative-b-link/secret-b.txt", "file-link"):
        denied(sftp.open, path)
        denied(sftp.stat, path)
    denied(sftp.listdir, "etc-link")
    denied(sftp.listdir, "b-link")
    denied(sftp.readlink, "file-link")
    denied(sftp.readlink, "etc-link")
    denied(sftp.normalize, "etc-link")
    denied(sftp.chmod, "file-link", 0o777)
    denied(sftp.utime, "file-link", (1, 1))


def test_writing_through_a_symlink_is_denied(world):
    sftp = world["sftp"]
    denied(sftp.open, "b-link/planted.txt", "w")
    denied(sftp.open, "file-link", "w")
    denied(sftp.mkdir, "b-link/newdir")
    denied(sftp.rename, "inner/mine.txt", "b-link/stolen.txt")
    denied(sftp.remove, "b-link/secret-b.txt")
    assert not (world["daemon"].home(B) / "planted.txt").exists()
    assert (world["daemon"].home(B) / "secret-b.txt").exists()
    assert (world["outside"] / "secret.txt").read_text() == "not for tenants"


def test_hard_linked_file_is_not_served(world):
    sftp = world["sftp"]
    denied(sftp.open, "hard-link")
    denied(sftp.open, "hard-link", "w")
    assert (world["outside"] / "secret.txt").read_text() == "not for tenants"


def test_symlinks_inside_the_home_still_work(world):
    sftp = world["sftp"]
    assert sftp.open("inner-link/mine.txt").read() == b"mine"
    assert sftp.normalize("inner-link") == "/inner"
    assert sftp.readlink("inner-link") == "/inner"


def test_links_cannot_be_created(world):
    require_tool("sftp")
    sftp = world["sftp"]
    denied(sftp.symlink, "/etc/passwd", "new-link")
    denied(sftp.symlink, "inner/mine.txt", "new-inner-link")
    result = sftp_batch(world["daemon"], A, "ln inner/mine.txt hard-new\n", key=world["key"])
    assert result.returncode != 0
    result = sftp_batch(world["daemon"], A, "ln -s /etc/passwd soft-new\n", key=world["key"])
    assert result.returncode != 0
    home = world["daemon"].home(A)
    assert not any((home / n).exists() or (home / n).is_symlink() for n in ("new-link", "hard-new", "soft-new"))


def test_rename_out_of_the_home_stays_inside(world):
    sftp = world["sftp"]
    with sftp.open("movable.txt", "w") as handle:
        handle.write(b"x")
    denied(sftp.rename, "movable.txt", "../district-b/moved.txt")  # = /district-b/moved.txt: no such folder
    assert not (world["daemon"].home(B) / "moved.txt").exists()
    sftp.rename("movable.txt", "inner/../../../moved.txt")  # clamped to /moved.txt in the own home
    assert (world["daemon"].home(A) / "moved.txt").exists()


def test_reports_is_read_only(world):
    sftp = world["sftp"]
    reports = world["daemon"].home(A) / "reports"
    (reports / "run-1.txt").write_text("report")
    assert sftp.open("reports/run-1.txt").read() == b"report"
    with pytest.raises(IOError, match="read-only"):
        sftp.open("reports/x.zip", "w")
    denied(sftp.remove, "reports/run-1.txt")
    denied(sftp.rename, "reports/run-1.txt", "stolen.txt")
    denied(sftp.mkdir, "reports/sub")
    denied(sftp.rmdir, "reports")
    denied(sftp.rename, "reports", "gone")
    denied(sftp.chmod, "reports/run-1.txt", 0o777)
    with sftp.open("to-reports.txt", "w") as handle:
        handle.write(b"x")
    denied(sftp.rename, "to-reports.txt", "reports/to-reports.txt")
    assert (reports / "run-1.txt").exists()


def test_zip_through_symlinked_folder_is_refused(world):
    upload = roster_zip(world["root"], "via-link.zip")
    denied(world["sftp"].put, str(upload), "b-link/via-link.zip")
    assert not (world["daemon"].home(B) / "via-link.zip").exists()


def test_home_and_state_files_are_owner_only(world):
    daemon = world["daemon"]
    for path in (daemon.data_dir, daemon.data_dir / "homes", daemon.home(A), daemon.home(A) / "reports",
                 daemon.data_dir / "incoming"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (daemon.data_dir / "rostergate.db", daemon.data_dir / "ssh_host_ed25519_key"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    with world["sftp"].open("perm.txt", "w") as handle:
        handle.write(b"x")
    world["sftp"].chmod("perm.txt", 0o666)
    assert stat.S_IMODE((daemon.home(A) / "perm.txt").stat().st_mode) == 0o600
