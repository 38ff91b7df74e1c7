"""The converter's ledger: where every source row went, and where every output row came from.

A :class:`Ledger` counts the rows read from each source file, the rows used in
the output, and every row left out with its reason (the keys of :data:`REASONS`,
or ``role_<role>``), keeping each dropped row's file line and ``sourcedId``.
The invariant it lets callers check, per source file: rows read == rows used +
rows dropped (:attr:`EntityCount.balanced`). :func:`drop_issues` turns the
drops into one catalogue warning ``convert.dropped.<reason>`` per file and reason;
:func:`lineage_frame` records the source file and line of output rows.

The reason texts and fix hints live in the issue catalogue (``DROP_REASONS``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rostergate.formats.arrowops import Mask, Positions
from rostergate.formats.catalogue import DROP_REASONS, ROLE_DROPPED, issue
from rostergate.formats.convert.frames import select
from rostergate.formats.issues import Issue

#: Why a row was left out: reason → message (the report shows both).
REASONS: dict[str, str] = {reason: why for reason, (why, _hint) in DROP_REASONS.items()}


def role_reason(role: str) -> str:
    return f"role_{role}" if re.fullmatch(r"[A-Za-z]+", role or "") else "role_other"


def reason_message(reason: str) -> str:
    """The text shown beside ``reason`` (``role_parent``: "has role parent, …")."""
    if reason in REASONS:
        return REASONS[reason]
    if reason.startswith("role_"):
        return ROLE_DROPPED[0].format(role=reason[5:])
    return reason


@dataclass(frozen=True)
class Drop:
    """``count`` rows of ``file`` left out for ``reason`` (a key of :data:`REASONS` or ``role_*``)."""

    file: str
    reason: str
    count: int
    message: str


@dataclass
class EntityCount:
    """Rows read from one source file, rows used, and rows dropped by reason."""

    input: int = 0
    output: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.input == self.output + sum(self.dropped.values())


def empty_dropped() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="str") for c in ("file", "sourcedId", "reason")}
                        | {"line": pd.Series(dtype="int64")})[["file", "line", "sourcedId", "reason"]]


class Ledger:
    """Counts input rows and records every dropped row with its reason."""

    def __init__(self) -> None:
        self.counts: dict[str, EntityCount] = {}
        self.parts: list[pd.DataFrame] = []
        self.issues: list[Issue] = []

    def take(self, file: str, frame: pd.DataFrame, malformed: Positions | None = None) -> None:
        """Count ``frame``'s rows as read from ``file``, and the rows the reader could not read at
        all (``malformed``: their lines) as read and dropped, so that every row is accounted for."""
        bad = np.zeros(0, dtype=np.int64) if malformed is None else np.asarray(malformed, dtype=np.int64)
        self.counts[file] = EntityCount(input=len(frame) + len(bad))
        if len(bad):
            self.parts.append(pd.DataFrame({"file": file, "line": bad, "sourcedId": "", "reason": "malformed"}))
            self.counts[file].dropped["malformed"] = len(bad)

    def drop(self, frame: pd.DataFrame, mask: pd.Series | Mask, file: str, reason: str) -> pd.DataFrame:
        """Record ``frame[mask]`` as dropped for ``reason``; return the rest."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            self._record(frame, mask, file, reason)
            return select(frame, ~mask)
        return frame

    def drop_where(self, frame: pd.DataFrame, alive: Mask, mask: pd.Series | Mask, file: str,
                   reason: str) -> Mask:
        """:meth:`drop` without copying ``frame``: rows stay, ``alive`` marks those not yet dropped.

        Records the rows that are alive and in ``mask``; returns the new ``alive``.
        For the biggest file, where filtering a wide frame once per reason costs more
        than the checks themselves.
        """
        hit: Mask = alive & np.asarray(mask, dtype=bool)
        if hit.any():
            self._record(frame, hit, file, reason)
            remaining: Mask = alive & ~hit
            return remaining
        return alive

    def _record(self, frame: pd.DataFrame, mask: Mask, file: str, reason: str) -> None:
        gone = select(frame[["_line", "sourcedId"]], mask)
        self.parts.append(pd.DataFrame({
            "file": file, "line": gone["_line"].to_numpy(), "sourcedId": gone["sourcedId"].to_numpy(), "reason": reason,
        }))
        dropped = self.counts[file].dropped
        dropped[reason] = dropped.get(reason, 0) + int(mask.sum())

    def used(self, file: str, count: int) -> None:
        self.counts[file].output += count

    def dropped_rows(self) -> pd.DataFrame:
        if not self.parts:
            return empty_dropped()
        frame = pd.concat(self.parts, ignore_index=True)
        frame["file"] = frame["file"].astype("str")
        frame["reason"] = frame["reason"].astype("str")
        frame["sourcedId"] = frame["sourcedId"].astype("str")
        return frame.sort_values(["file", "line"], kind="stable", ignore_index=True)

    def drops(self) -> list[Drop]:
        out = []
        for file in sorted(self.counts):
            for reason, count in sorted(self.counts[file].dropped.items()):
                out.append(Drop(file, reason, count, reason_message(reason)))
        return out


def drop_issues(drops: list[Drop], rows: pd.DataFrame) -> list[Issue]:
    """One warning per (file, reason), located at its first dropped row."""
    first = rows.drop_duplicates(["file", "reason"])
    at = {(file, reason): (int(line), str(sourced_id)) for file, reason, line, sourced_id in zip(
        first["file"].tolist(), first["reason"].tolist(), first["line"].tolist(), first["sourcedId"].tolist())}
    issues = []
    for d in drops:
        line, sourced_id = at[(d.file, d.reason)]
        role = d.reason[5:] if d.reason.startswith("role_") else None  # the family template's {role}
        issues.append(issue(f"convert.dropped.{d.reason}", file=d.file, line=line, column="sourcedId",
                            value=sourced_id, count=d.count, role=role))
    return issues


def lineage_frame(file: str, lines: pd.Series) -> pd.DataFrame:
    """(source_file, source_line) per output row; the constant file name costs one category."""
    return pd.DataFrame({
        "source_file": pd.Categorical.from_codes(np.zeros(len(lines), dtype=np.int8), categories=pd.Index([file])),
        "source_line": np.asarray(lines, dtype="int64"),
    })
