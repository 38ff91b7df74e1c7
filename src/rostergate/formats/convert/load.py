"""Finding and reading the upload's CSV files for the converter.

:func:`~rostergate.formats.read.sources.find_file` locates a file by name
(case-insensitively, at the top of the folder or in its single subfolder);
:func:`read_lines` reads it as a frame of
strings plus the file line of each row (header = line 1); :func:`load_file`
adds the ``_line`` column and the input count to the ledger. Input the
converter cannot work with (a required file or column missing, an unreadable
file) raises :class:`Fatal`, which carries the catalogue error issue; an absent
optional file is a warning on the ledger. Problems inside readable files are
the validator's to report, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import numpy as np
import pandas as pd

from rostergate.formats.arrowops import Positions
from rostergate.formats.catalogue import issue
from rostergate.formats.convert.ledger import Ledger
from rostergate.formats.issues import Issue
from rostergate.formats.read.csvio import load_table
from rostergate.formats.read.sources import find_file


class Fatal(Exception):
    """Input the converter cannot work with; carries the error issue."""

    def __init__(self, issue: Issue):
        super().__init__(issue.message)
        self.issue = issue


@dataclass
class SourceRows:
    """A source file as the converter reads it: the frame (all strings), the file line of each
    row (header = line 1) and the lines of the rows that could not be read (``malformed``)."""

    frame: pd.DataFrame
    lines: Positions
    malformed: Positions


def read_lines(path: Path, name: str, escape_char: str | None = None) -> SourceRows:
    """Read a source file (see :class:`SourceRows`); unreadable as a whole: :class:`Fatal`.

    Lines come from csvio's loader, which knows when quoted values span lines; the
    issues it finds (encoding, bad rows) are the validator's to report, not ours, but every
    row it could not read is kept by line, so that the ledger accounts for it.
    """
    loaded = load_table(path, name, escape_char=escape_char)
    if loaded.frame is None:
        reasons = "; ".join(i.message for i in loaded.issues if i.severity == "error") or "unreadable"
        raise Fatal(issue("convert.unreadable", file=name, reason=reasons))
    frame = loaded.frame.astype("str")
    frame.columns = [str(c).strip() for c in frame.columns]
    lines = loaded.lines if loaded.lines is not None else np.arange(2, len(frame) + 2)
    return SourceRows(frame, np.asarray(lines, dtype="int64"), np.asarray(loaded.malformed, dtype="int64"))


def read_source(src_dir: Path, name: str) -> tuple[pd.DataFrame, pd.Series]:
    """A source file and a line → row position index (for the preview)."""
    path = find_file(src_dir, name)
    if path is None:
        return pd.DataFrame(), pd.Series(dtype="int64")
    rows = read_lines(path, name)
    return rows.frame, pd.Series(np.arange(len(rows.frame)), index=rows.lines)


@overload
def load_file(src_dir: Path, name: str, required: tuple[str, ...], ledger: Ledger,
              optional_file: Literal[False] = False) -> pd.DataFrame: ...
@overload
def load_file(src_dir: Path, name: str, required: tuple[str, ...], ledger: Ledger,
              optional_file: bool) -> pd.DataFrame | None: ...
def load_file(src_dir: Path, name: str, required: tuple[str, ...], ledger: Ledger,
              optional_file: bool = False) -> pd.DataFrame | None:
    """Read ``name`` with a ``_line`` column; a missing file/column is fatal unless optional."""
    path = find_file(src_dir, name)
    if path is None:
        if optional_file:
            ledger.issues.append(issue("convert.missing_file", file=name, severity="warning"))
            return None
        raise Fatal(issue("convert.missing_file", file=name))
    rows = read_lines(path, name)
    frame = rows.frame
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise Fatal(issue("convert.missing_column", file=name, line=1, column=missing[0]))
    frame["_line"] = rows.lines
    ledger.take(name, frame, rows.malformed)
    return frame
