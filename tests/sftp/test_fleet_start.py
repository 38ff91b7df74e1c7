"""Starting a set of SFTP server processes: one that cannot start takes the others of its set down
(they are supervised by nobody yet), and a reload that cannot start a new set keeps the old one."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from rostergate import store
from rostergate.sftp.fleet import Fleet, ServerProcessConfig, ServerProcessFailed
from rostergate.sftp.settings import SftpSettings

_PIDS = itertools.count(40_000)


class _Process:
    """What Fleet uses of a multiprocessing process."""

    def __init__(self) -> None:
        self.pid = next(_PIDS)
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive

    def kill(self) -> None:
        self.alive = False


def _fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int) -> tuple[Fleet, list[_Process]]:
    """A fleet of two whose ``fail_at``-th started process (counting from 0) dies before it listens."""
    config = ServerProcessConfig("127.0.0.1", 0, tmp_path / "key", tmp_path, SftpSettings(), 5.0, tmp_path / "s")

    async def on_upload(account: str, path: Path) -> None:
        return None

    fleet = Fleet(2, config, on_upload, store.connect_memory(), staged=None)  # type: ignore[arg-type]
    spawned: list[_Process] = []

    def spawn(config: ServerProcessConfig) -> _Process:
        spawned.append(_Process())
        return spawned[-1]

    async def wait_ready(process: _Process) -> None:
        if spawned.index(process) == fail_at:
            process.alive = False
            raise ServerProcessFailed(1)
        await asyncio.sleep(0.05)  # the sibling is still coming up when the failure is known

    monkeypatch.setattr(fleet, "_spawn", spawn)
    monkeypatch.setattr(fleet, "_wait_ready", wait_ready)
    return fleet, spawned


def test_a_set_with_a_process_that_cannot_start_leaves_no_process_running(tmp_path, monkeypatch):
    fleet, spawned = _fleet(tmp_path, monkeypatch, fail_at=0)
    with pytest.raises(ServerProcessFailed):
        asyncio.run(asyncio.wait_for(fleet._start_many(2, fleet.config), 10))
    assert len(spawned) == 2 and not any(p.is_alive() for p in spawned)


def test_a_reload_whose_new_set_cannot_start_keeps_the_old_set_and_its_settings(tmp_path, monkeypatch):
    fleet, spawned = _fleet(tmp_path, monkeypatch, fail_at=3)
    asyncio.run(asyncio.wait_for(fleet._start_many(2, fleet.config), 10))
    old, config = list(spawned), fleet.config
    fleet._live = old  # type: ignore[assignment]
    with pytest.raises(ServerProcessFailed):
        asyncio.run(asyncio.wait_for(fleet.replace_settings(SftpSettings(), 1.0), 10))
    assert fleet._live == old and all(p.is_alive() for p in old) and fleet.config is config
    assert not any(p.is_alive() for p in spawned[2:])


def test_a_reload_hands_the_new_grace_period_to_the_new_set(tmp_path, monkeypatch):
    fleet, spawned = _fleet(tmp_path, monkeypatch, fail_at=99)
    asyncio.run(asyncio.wait_for(fleet.replace_settings(SftpSettings(), 1.5), 10))
    assert fleet.config.stop_grace_seconds == 1.5 and len(fleet._live) == 2
