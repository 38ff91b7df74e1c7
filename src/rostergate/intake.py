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
from collections.abc import Callable
from pathlib import Path

import structlog

from rostergate import metrics, timeutil
from rostergate.formats.archive import is_complete_zip
from rostergate.history import History, new_run_id
from rostergate.sftp.files import is_upload_name

log = structlog.get_logger("rostergate.intake")

SPOOL_DIR = "spool"
UPLOAD_NAME = "upload.zip"
META_NAME = "meta.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Intake:
    """Turns finished uploads into ``received`` runs and wakes the pipeline."""

    def __init__(self, history: History, data_dir: Path, wake: Callable[[], None] = lambda: None):
        self.history = history
        self.spool = Path(data_dir) / SPOOL_DIR
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._wake = wake

    async def upload_finished(self, account: str, path: Path) -> str | None:
        """Check that ``path`` is a complete ZIP and, if so, start a run; returns the run id.

        An incomplete or corrupt ZIP is left where it is; the SFTP server then puts it
        back in the home so that the client can resume it.
        """
        if not await asyncio.to_thread(is_complete_zip, path):
            log.info("upload_incomplete", account=account, upload=path.name)
            return None
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
        target.chmod(0o600)
        self._record(run_id, account, name, target, received_at)
        return run_id

    def _record(self, run_id: str, account: str, name: str, target: Path, received_at: str) -> None:
        size = target.stat().st_size
        self.history.record_received(
            run_id, account, name, str(target), size, sha256_of(target), received_at=received_at
        )
        log.info("run_received", run_id=run_id, account=account, bytes=size)
        metrics.RUNS_RECEIVED.labels(account).inc()
        self._wake()

    def recover(self, homes: dict[str, Path] | None = None) -> list[str]:
        """Start runs the daemon may have missed while it was down.

        * spooled uploads without a run (killed between move and record);
        * complete ``*.zip`` files left in account ``homes`` (put back after an
          intake failure, or written there while the daemon was down).
          Incomplete ones stay for a resume.
        """
        recovered = self._recover_spool()
        for account, home in (homes or {}).items():
            for path in sorted(home.rglob("*.zip")):
                relative = path.relative_to(home).as_posix()
                if is_upload_name(relative) and is_complete_zip(path):
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
