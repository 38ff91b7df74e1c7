"""ASM input re-emitted as ASM: the six files normalised, no row filtered.

:func:`reemit_asm` reads the six Apple School Manager files (Apple's escaping,
asm.md §1.1), puts each file's template columns first and in template order,
keeps the extra columns Apple allows after them (``location_id_N``,
``instructor_id_N``, ``class_display_name``; asm.md §1.2, §1.5), and leaves out
unknown columns with a warning; a missing template column is written empty,
with a warning. Every row read is used (a row the reader could not read is counted as
dropped, ``malformed``). A missing file is fatal. The mapping does
not apply to ASM input.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from rostergate.formats.catalogue import issue
from rostergate.formats.convert.ledger import Ledger, lineage_frame
from rostergate.formats.convert.load import Fatal, read_lines
from rostergate.formats.read.sources import find_file
from rostergate.formats.schema.asm import ESCAPE, HEADERS, NUMBERED, OPTIONAL


def reemit_asm(src_dir: Path, ledger: Ledger) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Re-emit ASM files: template columns in order, allowed extras after, unknown columns dropped."""
    tables, lineage = {}, {}
    for stem, header in HEADERS.items():
        name = f"{stem}.csv"
        path = find_file(src_dir, name)
        if path is None:
            raise Fatal(issue("convert.missing_file", file=name))  # asm.md §1.1: all six files, every time
        rows = read_lines(path, name, escape_char=ESCAPE)
        frame, lines = rows.frame, rows.lines
        ledger.take(name, frame, rows.malformed)
        ledger.used(name, len(frame))
        numbered, optional = NUMBERED.get(stem), OPTIONAL.get(stem, ())
        extras = [c for c in frame.columns if c not in header
                  and (c in optional or (numbered is not None and numbered.pattern.fullmatch(c)))]
        extras.sort(key=lambda c: (c.rstrip("0123456789"), int(re.sub(r"\D", "", c) or 0)))
        for column in frame.columns:
            if column not in header and column not in extras:
                ledger.issues.append(issue("convert.asm.unknown_column", file=name, line=1, column=column))
        for column in header:
            if column not in frame.columns:
                ledger.issues.append(issue("convert.asm.missing_column", file=name, line=1, column=column))
                frame[column] = ""
        tables[name] = frame[[*header, *extras]].reset_index(drop=True)
        lineage[name] = lineage_frame(name, pd.Series(lines))
    return tables, lineage
