"""The statuses of a run and the only ways it may move between them.

This is the vocabulary of :mod:`rostergate.runs.lifecycle`, kept in a leaf module
(it imports nothing of rostergate) so that :mod:`rostergate.history`, which must
not import ``runs/``, can store and return :class:`RunStatus` and enforce
:data:`TRANSITIONS` in the same SQL statement that changes a status: the daemon
and the CLI write the same store, and a check made before the write could be
stale by the time of the write.

::

    received ──► processing ──► delivered
       ▲ │          │  ├──────► rejected    (the upload broke a rule)
       │ │          │  ├──────► held ─────► received (approved) | discarded (rejected by an operator)
       │ │          │  ├──────► retrying ─► processing (when due) | received (retried by an operator)
       │ │          │  ├──────► failed ───► received (retried by an operator)
       │ │          │  └──────► received    (the daemon stopped in the middle: resumed on start)
       │ └──────────┴─► superseded          (a newer upload of the account; from received, retrying, held)
       └── the run's first status, given by the intake

The values are the contract's (DESIGN.md): they are what the database stores and
what ``--json`` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class RunStatus(StrEnum):
    """Where a run is; a ``str``, so it compares, formats and serialises as its value."""

    RECEIVED = "received"
    PROCESSING = "processing"
    RETRYING = "retrying"
    HELD = "held"
    DELIVERED = "delivered"
    REJECTED = "rejected"  # the upload broke a rule; the report says which
    FAILED = "failed"  # could not deliver, or an internal error
    DISCARDED = "discarded"  # an operator rejected a held run
    SUPERSEDED = "superseded"  # a newer upload of the same account replaced it before delivery

    @property
    def final(self) -> bool:
        """True when the run is over for the daemon (only an operator's retry starts a failed one again)."""
        return self in FINAL


FINAL: Final = frozenset({RunStatus.DELIVERED, RunStatus.REJECTED, RunStatus.FAILED, RunStatus.DISCARDED,
                          RunStatus.SUPERSEDED})

# current status -> the statuses it may change to. Staying in a status is not a change
# (History.update changes a run's other columns).
TRANSITIONS: Final[Mapping[RunStatus, frozenset[RunStatus]]] = MappingProxyType({
    RunStatus.RECEIVED: frozenset({RunStatus.PROCESSING, RunStatus.SUPERSEDED}),
    RunStatus.PROCESSING: frozenset({RunStatus.DELIVERED, RunStatus.REJECTED, RunStatus.FAILED, RunStatus.HELD,
                                     RunStatus.RETRYING, RunStatus.RECEIVED}),
    RunStatus.RETRYING: frozenset({RunStatus.PROCESSING, RunStatus.SUPERSEDED, RunStatus.RECEIVED}),
    RunStatus.HELD: frozenset({RunStatus.RECEIVED, RunStatus.DISCARDED, RunStatus.SUPERSEDED}),
    RunStatus.FAILED: frozenset({RunStatus.RECEIVED}),
    RunStatus.DELIVERED: frozenset(),
    RunStatus.REJECTED: frozenset(),
    RunStatus.DISCARDED: frozenset(),
    RunStatus.SUPERSEDED: frozenset(),
})


def allowed(current: RunStatus, wanted: RunStatus) -> bool:
    """True when a run in ``current`` may change to ``wanted``."""
    return wanted in TRANSITIONS[current]


def sources(wanted: RunStatus) -> frozenset[RunStatus]:
    """The statuses a run may be in to change to ``wanted``."""
    return frozenset(current for current, targets in TRANSITIONS.items() if wanted in targets)
