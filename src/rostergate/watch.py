"""Watch mode: ZIPs that another SFTP server drops into a folder start runs too.

Another server's closes cannot be seen from here, so a dropped ``*.zip``
counts as finished when its size and modification time stayed the same for
``settle_seconds``; it is then judged like an SFTP upload
(:meth:`Intake.upload_finished`): a ZIP without its end record yet is left for
the sender to finish, anything else becomes a run (a file that is no readable
ZIP is rejected with a report). Temporary names
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

from rostergate.fstree import TooManyEntries, walk_files
from rostergate.intake import Intake

log = structlog.get_logger("rostergate.watch")
SCAN_MAX_ENTRIES = 100_000  # entries looked at in the inbox at start


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
        self._pending: dict[Path, asyncio.Task[None]] = {}
        self._real_folder = os.path.realpath(self.folder)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Take what is already there, then follow changes until ``stop`` is set."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._real_folder = os.path.realpath(self.folder)
        for path in self._already_there():
            self._consider(path)
        log.info("watch_started", account=self.account)
        async for changes in awatch(self.folder, stop_event=stop, recursive=True):
            for change, name in changes:
                if change != Change.deleted:
                    self._consider(Path(name))

    def _already_there(self) -> list[Path]:
        """The files in the inbox at start, by an iterative, bounded walk: whoever fills the
        inbox (another server's tenants) may have made a tree deeper than Python's recursion."""
        found: list[Path] = []
        try:
            found = [self.folder / e.relative for e in walk_files(self.folder, SCAN_MAX_ENTRIES)]
        except TooManyEntries:
            log.warning("watch_scan_truncated", account=self.account, limit=SCAN_MAX_ENTRIES)
        except OSError as exc:
            log.warning("watch_scan_failed", account=self.account, error=exc.strerror or str(exc))
        return found

    def _inside(self, path: Path) -> bool:
        """``path`` is a file reached inside the inbox without any symlink: a link planted in the
        inbox (watchfiles follows links) must not make us take, and move, a file from elsewhere."""
        real = os.path.realpath(path)
        return real == os.path.normpath(os.path.abspath(path)) and real.startswith(self._real_folder + os.sep)

    def _consider(self, path: Path) -> None:
        if not is_candidate(path) or not self._inside(path):
            return
        task = self._pending.get(path)
        if task is not None:
            task.cancel()  # it changed again: start settling afresh
        self._pending[path] = asyncio.create_task(self._settle(path))

    async def _settle(self, path: Path) -> None:
        try:
            before = _signature(path)
            await asyncio.sleep(self.settle_seconds)
            if before is None or _signature(path) != before or not self._inside(path):
                return
            run_id = await self.intake.upload_finished(self.account, path)  # judged as SFTP uploads are
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
