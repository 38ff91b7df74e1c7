"""Completed upload → run.

A finished upload is moved out of the tenant's home into
``<data_dir>/spool/<run-id>/upload.zip`` and recorded as ``received``. The move
happens before the record, and a ``meta.json`` beside the ZIP lets start-up
recovery record a run whose daemon died in between, so no upload is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from rostergate import metrics, timeutil
from rostergate.accountrecords import REPORTS_DIR
from rostergate.formats.read.archive import ZipState, zip_state
from rostergate.fstree import TooManyEntries, walk_files
from rostergate.history import History, new_run_id
from rostergate.uploadnames import is_upload_name

log = structlog.get_logger("rostergate.intake")

SPOOL_DIR = "spool"
UPLOAD_NAME = "upload.zip"
META_NAME = "meta.json"
RECOVER_MAX_ENTRIES = 100_000  # per home; more than any limit lets a tenant make


def sha256_of(path: Path) -> str:
    """The SHA-256 of the file at ``path``, in hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class Intake:
    """Turns finished uploads into ``received`` runs and wakes the pipeline.

    Uploads of different accounts are recorded from several threads at once; they take
    turns on ``history`` (one lock), so give the intake a store connection no other thread
    uses: a connection shared with another thread can hold a read open when this one
    writes, and SQLite then answers "database is locked" at once, whatever its busy timeout.
    """

    def __init__(self, history: History, data_dir: Path, wake: Callable[[], None] = lambda: None):
        self.history = history
        self._history_lock = threading.Lock()
        self.spool = Path(data_dir) / SPOOL_DIR
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._wake = wake
        self._in_order: dict[str, asyncio.Lock] = {}  # account -> its uploads are recorded one after the other

    async def upload_finished(self, account: str, path: Path) -> str | None:
        """Start a run for the finished upload ``path``; returns the run id, or ``None`` when it is not finished.

        ``path`` is judged from its end record and central directory only, never
        decompressed (:func:`~rostergate.formats.read.archive.zip_state`). A ZIP without
        its end record yet is left where it is (the SFTP server puts it back in the
        home so that the client can resume it). Everything else becomes a run: a
        complete ZIP, and a finished file that is no readable ZIP, which the pipeline
        rejects (``archive.not_a_zip``) with a report to the district.

        One account's uploads are recorded in the order they finished (the order of the
        calls), each after the one before: a small upload right behind a large one would
        otherwise be recorded first, and the pipeline delivers an account's runs in the
        order they were recorded.
        """
        async with self._in_order.setdefault(account, asyncio.Lock()):  # FIFO: the order of the calls
            state = await asyncio.to_thread(zip_state, path)
            if state is ZipState.INCOMPLETE:
                log.info("upload_incomplete", account=account, upload=path.name)
                return None
            if state is ZipState.NOT_ZIP:
                log.info("upload_not_a_zip", account=account, upload=path.name)
            return await asyncio.to_thread(self.accept, account, path)

    def accept(self, account: str, path: Path, upload_name: str | None = None) -> str | None:
        """Move ``path`` into the spool and record a ``received`` run (blocking; call in a thread)."""
        run_id = new_run_id()
        run_dir = self.spool / run_id
        run_dir.mkdir(mode=0o700)
        received_at = timeutil.iso()
        name = upload_name or path.name
        (run_dir / META_NAME).write_text(
            json.dumps({"account": account, "upload_name": name, "received_at": received_at})
        )
        target = run_dir / UPLOAD_NAME
        try:
            os.rename(path, target)
        except FileNotFoundError:  # taken by a concurrent completion of the same file
            (run_dir / META_NAME).unlink()
            run_dir.rmdir()
            return None
        target.chmod(0o400)  # read-only from here: the run checks these bytes against the recorded SHA-256
        self._record(run_id, account, name, target, received_at)
        return run_id

    def _record(self, run_id: str, account: str, name: str, target: Path, received_at: str) -> None:
        size, sha256 = target.stat().st_size, sha256_of(target)
        with self._history_lock:
            self.history.record_received(run_id, account, name, str(target), size, sha256, received_at=received_at)
        log.info("run_received", run_id=run_id, account=account, bytes=size)
        metrics.RUNS_RECEIVED.labels(account).inc()
        self._wake()

    def recover(self, homes: dict[str, Path] | None = None) -> list[str]:
        """Start runs the daemon may have missed while it was down.

        * spooled uploads without a run (killed between move and record);
        * finished ``*.zip`` files left in account ``homes`` (put back after an
          intake failure, or written there while the daemon was down), judged as
          :meth:`upload_finished` judges them: a file that is no readable ZIP
          becomes a run too (rejected with a report). Only a ZIP without its end
          record stays, for a resume.

        Homes are walked without recursion and without following symlinks, at
        most :data:`RECOVER_MAX_ENTRIES` entries each (:mod:`rostergate.fstree`):
        no tree a tenant made can stop the daemon from starting.
        """
        recovered = self._recover_spool()
        for account, home in (homes or {}).items():
            for path in _uploads_in(account, home):
                if zip_state(path) is not ZipState.INCOMPLETE:
                    run_id = self.accept(account, path)
                    if run_id:
                        recovered.append(run_id)
        return recovered

    def _recover_spool(self) -> list[str]:
        recovered = []
        for run_dir in sorted(p for p in self.spool.iterdir() if p.is_dir()):
            meta, target = run_dir / META_NAME, run_dir / UPLOAD_NAME
            if not meta.exists() or not target.exists() or self.history.get(run_dir.name):
                continue
            info = json.loads(meta.read_text())
            self._record(run_dir.name, info["account"], info["upload_name"], target, info["received_at"])
            recovered.append(run_dir.name)
        return recovered


def _uploads_in(account: str, home: Path) -> list[Path]:
    """The upload-named files in ``home`` (``reports/`` is not entered), in name order."""
    found: list[Path] = []
    try:
        for entry in walk_files(home, RECOVER_MAX_ENTRIES, exclude={REPORTS_DIR}):
            if is_upload_name(entry.relative):
                found.append(home / entry.relative)
    except TooManyEntries:
        log.warning("recover_home_truncated", account=account, limit=RECOVER_MAX_ENTRIES)
    except OSError as exc:  # a missing home, or a folder moved during the walk
        log.warning("recover_home_failed", account=account, error=exc.strerror or str(exc))
    return sorted(found)
