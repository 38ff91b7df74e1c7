"""A home holding a tree no limit allows any more: 1,100 nested folders, a ZIP at the bottom and
symlinks pointing outside the home.

Such a tree may predate ``max_folder_depth`` (or be restored from a backup). The
daemon must still start (its recovery walk is iterative and follows no link),
turn the buried ZIP into a run, serve the account, and ``accounts delete`` must
remove the whole home without touching what the links point to.

The tree is planted with ``os.mkdir(dir_fd=...)`` (pathlib would recurse) and
removed in the test's own clean-up with :func:`rostergate.fstree.remove_tree`,
only ever on a path under ``tmp_path``: pytest's removal of old temporary
folders recurses once per level.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rostergate.fstree import remove_tree, walk
from tests.conftest import Daemon, local_flow
from tests.sftp.helpers import paramiko_client, roster_zip, run_sha256, wait_runs_named

A, B = "district-a", "district-b"
DEPTH = 1100
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def plant_deep_tree(top: Path, depth: int, zip_bytes: bytes, outside: Path) -> None:
    """``top/d/d/.../d`` (``depth`` folders below ``top``) holding ``buried.zip`` and a link to ``outside``."""
    os.mkdir(top, 0o700)
    fd = os.open(top, _DIR)
    try:
        for _ in range(depth):
            os.mkdir("d", 0o700, dir_fd=fd)
            child = os.open("d", _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
        with open(os.open("buried.zip", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=fd), "wb") as handle:
            handle.write(zip_bytes)
        os.symlink(outside, "escape", dir_fd=fd)
    finally:
        os.close(fd)


def test_deep_tree_with_links_outside_recovers_serves_and_is_deleted(tmp_path):
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "keep.txt").write_text("not the tenant's")
    (outside / "inner" / "keep-too.txt").write_text("nor this")
    daemon = Daemon(tmp_path, local_flow(A, tmp_path / "outbox"))
    password = daemon.cli_json("accounts", "create", A)["password"]
    home = daemon.home(A)
    assert home.resolve().is_relative_to(tmp_path.resolve())
    good = roster_zip(tmp_path).read_bytes()
    try:
        plant_deep_tree(home / "deep", DEPTH, good, outside)
        (home / "escape-top").symlink_to(outside)
        assert sum(1 for _ in walk(home / "deep")) == DEPTH + 2

        daemon.start()
        [buried] = wait_runs_named(daemon, A, "buried.zip", timeout=40)
        assert run_sha256(daemon, buried["id"]) == hashlib.sha256(good).hexdigest()
        assert not any(entry.relative.endswith("buried.zip") for entry in walk(home))  # moved to the spool

        ssh = paramiko_client(daemon, A, password=password)  # the first session measures the deep home
        try:
            sftp = ssh.open_sftp()
            assert sorted(sftp.listdir("/")) == ["deep", "escape-top", "reports"]
            with sftp.open("fresh.zip", "w") as handle:
                handle.write(good)
        finally:
            ssh.close()
        wait_runs_named(daemon, A, "fresh.zip", timeout=40)

        # The flow for A goes from the configuration (delete is refused while one uses the account).
        daemon.config.write_text(daemon.config.read_text().split("[[flows]]")[0] + local_flow(B, tmp_path / "ob"))
        result = daemon.cli("accounts", "delete", A, "--yes")
        assert "deleted" in result.stdout
        assert not os.path.lexists(home)
        assert sorted(p.name for p in outside.rglob("*")) == ["inner", "keep-too.txt", "keep.txt"]
        assert (outside / "keep.txt").read_text() == "not the tenant's"
        assert (outside / "inner" / "keep-too.txt").read_text() == "nor this"
        assert daemon.process is not None and daemon.process.poll() is None  # the daemon runs on
    finally:
        daemon.stop()
        if os.path.lexists(home):  # only ever a path under tmp_path (checked above)
            remove_tree(home)
