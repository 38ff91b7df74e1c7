"""Everything the daemon and the CLI create is owner-only, whatever the umask they start with."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.conftest import local_flow, make_keypair, require_tool
from tests.sftp.helpers import roster_zip, sftp_batch

pytestmark = pytest.mark.e2e


def _loose(root: Path) -> list[str]:
    """Paths under ``root`` that group or others may read, write or enter."""
    found = []
    stack = [root]
    while stack and len(found) < 50:
        folder = stack.pop()
        for entry in os.scandir(folder):
            mode = entry.stat(follow_symlinks=False).st_mode
            if mode & 0o077:
                found.append(f"{entry.path} {stat.filemode(mode)}")
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return found


def test_a_permissive_umask_leaves_nothing_readable_by_others(daemon_factory, tmp_path):
    require_tool("sftp")
    outbox = tmp_path / "outbox"
    daemon = daemon_factory(local_flow("district-a", outbox))
    key = make_keypair(tmp_path, "tenant_key")
    previous = os.umask(0o022)  # inherited by the CLI and daemon processes started below
    try:
        daemon.cli("accounts", "create", "district-a", "--public-key", f"{key}.pub", "--no-password")
        daemon.start()
        upload = roster_zip(tmp_path)
        result = sftp_batch(daemon, "district-a", f"put {upload} roster.zip\n", key=key)
        assert result.returncode == 0, result.stderr
        runs = daemon.wait_for_runs(1)
    finally:
        os.umask(previous)
    assert runs[0]["status"] == "delivered", runs
    assert (daemon.data_dir / "snapshots").is_dir()  # the safeguard baseline was written too
    assert _loose(daemon.data_dir) == []
    assert _loose(outbox) == []
