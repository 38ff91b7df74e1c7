"""The prepared ZIP as a forwarder reads it: in blocks, hashed and counted as it is read.

The hashing runs on a helper thread, a few blocks behind the sending (hashlib releases
the GIL): the thread that sends never waits for SHA-256, which costs about as much CPU
as the encryption of an SFTP transfer.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from rostergate.errors import FinalError
from rostergate.intake import sha256_of

BLOCK = 1 << 20  # bytes read from the local file at a time
HASH_BEHIND = 4  # blocks the hashing may lag behind the sending (memory: this many blocks)

CHANGED = ("the file to deliver is not the one that was checked (its SHA-256 differs from the one recorded "
           "after the checks); nothing was delivered; 'rostergate runs retry RUN_ID' prepares it again")


class Source:
    """The local ZIP read in blocks, hashed and counted as it is read."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def blocks(self) -> Iterator[bytes]:
        """The file's blocks in order; every block is hashed once the iteration ends (or is closed)."""
        pending: deque[Future[None]] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rostergate-hash") as hasher:
            try:
                for block in iter(lambda: self.handle.read(BLOCK), b""):
                    pending.append(hasher.submit(self.digest.update, block))  # one thread: in order
                    self.size += len(block)
                    while len(pending) > HASH_BEHIND:
                        pending.popleft().result()
                    yield block
            finally:
                for future in pending:
                    future.result()

    def check(self, expected: str | None) -> str:
        """The SHA-256 of what was read; raises :class:`FinalError` when it is not ``expected``."""
        sent = self.digest.hexdigest()
        if expected is not None and sent != expected:
            raise FinalError(CHANGED)
        return sent


def check_unchanged(zip_path: Path, expected: str) -> None:
    """Raise :class:`FinalError` unless ``zip_path`` still has the SHA-256 ``expected``.

    OS errors are left to the caller's boundary.
    """
    if sha256_of(zip_path) != expected:
        raise FinalError(CHANGED)
