"""Delivery into a local folder (``file:///dir``): the same guarantees as SFTP, for a disk we can see.

The ZIP is written as ``.<name>.partial`` (owner-only), fsynced, its size checked,
renamed into place and the folder fsynced: no reader ever sees a partial file
under the final name, and a receipt means the bytes are on disk. What a failed
attempt wrote is removed. Errors are classified by :mod:`rostergate.forward.boundary`
exactly as an SFTP server's are: a full disk is retryable, a refusal is final.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

from rostergate import timeutil
from rostergate.config import Downstream
from rostergate.errors import RetryableError
from rostergate.forward.boundary import OPEN, READ_PREPARED, Attempt, os_errors
from rostergate.forward.protocol import Receipt, partial_name
from rostergate.forward.source import Source, check_unchanged


class FolderForwarder:
    """A :class:`~rostergate.forward.protocol.Forwarder` into the folder ``downstream.path``."""

    def __init__(self, downstream: Downstream):
        self.downstream = downstream
        self.folder = Path(downstream.path)

    def written_path(self, remote_name: str) -> str:
        return posixpath.join(self.downstream.path, partial_name(remote_name))

    def deliver(self, zip_path: Path, remote_name: str, expected_sha256: str | None = None,
                stale: Sequence[str] = ()) -> Receipt:
        at = Attempt(who="the file system", server=str(self.folder), folder=str(self.folder), target=zip_path.name)
        with os_errors(at):
            if expected_sha256 is not None:
                check_unchanged(zip_path, expected_sha256)
            return self._deliver(zip_path, remote_name, expected_sha256, stale, at)

    def _deliver(self, zip_path: Path, remote_name: str, expected: str | None, stale: Sequence[str],
                 at: Attempt) -> Receipt:
        target, partial = self.folder / remote_name, self.folder / partial_name(remote_name)
        at.phase, at.target = READ_PREPARED, zip_path.name
        with open(zip_path, "rb") as local:
            try:
                at.phase, at.target = "create", str(self.folder)
                self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                at.phase = "clean up"
                for path in stale:
                    if Path(path).parent == self.folder and Path(path) != partial:
                        at.target = path
                        Path(path).unlink(missing_ok=True)
                at.phase, at.target = OPEN, str(partial)
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    at.phase = "write"
                    os.fchmod(fd, 0o600)  # a partial file of an older attempt keeps its mode otherwise
                    with os.fdopen(fd, "wb", closefd=False) as out:
                        source = Source(local)
                        for block in source.blocks():
                            out.write(block)
                        out.flush()
                        os.fsync(fd)
                finally:
                    os.close(fd)
                sha256 = source.check(expected)
                at.phase = "check"
                held = partial.stat().st_size
                if held != source.size:
                    raise RetryableError(f"{partial} holds {held} of {source.size} bytes after writing")
                at.phase, at.target = "rename", str(target)
                os.replace(partial, target)
                _fsync_dir(self.folder)
            except BaseException:
                _unlink_quietly(partial)
                raise
        return Receipt(self.downstream.url, str(target), source.size, sha256, timeutil.iso(), "stat")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
