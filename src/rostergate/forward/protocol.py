"""What every forwarder promises: :class:`Forwarder`, and the :class:`Receipt` of a verified delivery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Receipt:
    """A verified delivery: where the file is, and the size and SHA-256 of the bytes sent."""

    destination: str  # the downstream URL as configured (it never holds a password)
    remote: str  # the delivered file's path on the downstream server, or in the folder
    size: int
    sha256: str
    finished_at: str
    verified: str  # how the size was checked: "stat", "size-on-handle" or "acks" (write and close statuses)

    def to_dict(self) -> dict[str, str | int]:
        """The receipt as stored with the delivery and printed by ``runs show --json``."""
        return asdict(self)


class Forwarder(Protocol):
    """Delivers prepared ZIPs to one downstream; blocking (the pipeline calls it in a thread).

    :meth:`deliver` returns a :class:`Receipt` only for a verified delivery and
    raises nothing but :class:`~rostergate.errors.RetryableError` (the pipeline
    tries again later) and :class:`~rostergate.errors.FinalError` (retrying cannot
    help): a forwarder maps every error of the libraries it uses at its boundary
    (:mod:`rostergate.forward.boundary`).
    """

    def written_path(self, remote_name: str) -> str:
        """Where an attempt writes before it is verified: what a crash in the middle can leave behind."""
        ...

    def deliver(self, zip_path: Path, remote_name: str, expected_sha256: str | None = None,
                stale: Sequence[str] = ()) -> Receipt:
        """Deliver ``zip_path`` as ``remote_name`` and verify it.

        ``expected_sha256``: the hash recorded when the ZIP was checked; the bytes
        sent must have it (otherwise :class:`~rostergate.errors.FinalError`).
        ``stale``: paths that crashed attempts left on this downstream (their
        :meth:`written_path`), removed first where the downstream lets us.
        """
        ...


def partial_name(remote_name: str) -> str:
    """The temporary name a file is written under before it is renamed into place."""
    return f".{remote_name}.partial"
