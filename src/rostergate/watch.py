"""Watch mode: ZIPs that another SFTP server drops into a folder start runs too.

Another server's closes cannot be seen from here, so a dropped ``*.zip``
counts as finished when it is a complete ZIP archive *and* its size and
modification time stayed the same for ``settle_seconds``. Temporary names
(``*.filepart``, ``*.partial``, dot-files such as lftp's ``.in.*``) are ignored
until they are renamed to ``*.zip``. The finished file is moved out of the
inbox into the spool, exactly like an upload to our own SFTP server.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog
from watchfiles import Change, awatch

from rostergate.formats.archive import is_complete_zip
from rostergate.intake import Intake

log = structlog.get_logger("rostergate.watch")


def is_candidate(path: Path) -> bool:
    """A visible ``*.zip`` file name (temporary and hidden names are not candidates)."""
    return path.suffix.lower() == ".zip" and not path.name.startswith(".")


class InboxWatcher:
    """Watches one folder for one account."""

    def __init__(self, folder: Path, account: str, intake: Intake, settle_seconds: float = 2.0):
        self.folder = Path(folder)
        self.account = account
        self.intake = intake
        self.settle_seconds = settle_seconds
        self._pending: dict[Path, asyncio.Task] = {}

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Take what is already there, then follow changes until ``stop`` is set."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.folder.rglob("*.zip")):
            self._consider(path)
        log.info("watch_started", account=self.account)
        async for changes in awatch(self.folder, stop_event=stop, recursive=True):
            for change, name in changes:
                if change != Change.deleted:
                    self._consider(Path(name))

    def _consider(self, path: Path) -> None:
        if not is_candidate(path):
            return
        task = self._pending.get(path)
        if task is not None:
            task.cancel()  # it changed again: start settling afresh
        self._pending[path] = asyncio.create_task(self._settle(path))

    async def _settle(self, path: Path) -> None:
        try:
            before = _signature(path)
            await asyncio.sleep(self.settle_seconds)
            if before is None or _signature(path) != before:
                return
            if not await asyncio.to_thread(is_complete_zip, path):
                log.info("upload_incomplete", account=self.account, upload=path.name)
                return
            run_id = await asyncio.to_thread(self.intake.accept, self.account, path)
            if run_id:
                log.info("watch_upload_taken", account=self.account, run_id=run_id)
        finally:
            if self._pending.get(path) is asyncio.current_task():
                del self._pending[path]


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns
