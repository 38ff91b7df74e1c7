"""OneRoster 1.1/1.2 (or ASM) CSV → the six Apple School Manager files: the public API.

:func:`convert_dir` reads a folder of CSVs and returns a :class:`Conversion`:
the six ASM tables, every dropped source row counted by reason, issues, and
per-row lineage (the source file and line behind each output row). It never
raises on bad data: impossible input (no users.csv, a missing structural column)
becomes an ``error`` issue and empty tables, so callers check ``conversion.ok``.
:func:`write_asm_zip` writes a conversion; :func:`conversion_summary` and
:func:`render_preview` describe it for people; :func:`trace_to_input` places what an
output check finds at the uploaded file and line it came from.

The work is done elsewhere in this package: :mod:`.oneroster_to_asm` (OneRoster
input, asm.md §3.3 and docs/mapping.md), :mod:`.asm_reemit` (ASM input),
:mod:`.columnrules` (mapped columns, ``id_prefix``), :mod:`.ledger` (drops, counts,
lineage), :mod:`.load` (reading source files) and :mod:`.frames` (column-wise
helpers). Issue texts come from :mod:`rostergate.formats.catalogue`.

Accounting invariant, per source file: input rows == rows used in the output +
rows reported as dropped (``Conversion.counts[file].balanced``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rostergate.formats.convert.asm_reemit import reemit_asm
from rostergate.formats.convert.asmwrite import serialise, write_tables_zip
from rostergate.formats.convert.columnrules import apply_prefix, describe_rules, source_column
from rostergate.formats.convert.ledger import (
    Drop,
    EntityCount,
    Ledger,
    drop_issues,
    empty_dropped,
    lineage_frame,
    reason_message,
)
from rostergate.formats.convert.load import Fatal, read_source
from rostergate.formats.convert.mapping import Mapping
from rostergate.formats.convert.oneroster_to_asm import OneRosterToAsm
from rostergate.formats.issues import Issue, ValidationResult
from rostergate.formats.read.detect import oneroster_version
from rostergate.formats.schema.asm import FILES, HEADERS
from rostergate.formats.validate.entry import validate_asm_files

SOURCE_FORMATS = ("oneroster-1.1", "oneroster-1.2", "asm")


@dataclass
class Conversion:
    """Result of :func:`convert_dir`.

    ``tables`` maps each of the six ASM file names to a frame of strings with the
    exact header; ``lineage`` maps the same names to frames (``source_file``,
    ``source_line``) aligned row by row with ``tables`` (line 1 is the header);
    ``dropped_rows`` lists every dropped row (``file``, ``line``, ``sourcedId``,
    ``reason``); ``counts`` is keyed by source file name.
    """

    source_format: str
    tables: dict[str, pd.DataFrame]
    drops: list[Drop] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    counts: dict[str, EntityCount] = field(default_factory=dict)
    lineage: dict[str, pd.DataFrame] = field(default_factory=dict)
    dropped_rows: pd.DataFrame = field(default_factory=empty_dropped)

    @property
    def ok(self) -> bool:
        """False when an error made the conversion impossible (the tables are then empty)."""
        return not any(i.severity == "error" for i in self.issues)

    @property
    def output_counts(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in sorted(self.tables.items())}


def _empty_tables() -> dict[str, pd.DataFrame]:
    return {f"{stem}.csv": pd.DataFrame({c: pd.Series(dtype="str") for c in header})
            for stem, header in HEADERS.items()}


def convert_dir(src_dir: Path, source_format: str, mapping: Mapping | None = None,
                as_of: dt.date | None = None) -> Conversion:
    """Convert the CSVs in ``src_dir`` (or its only subfolder) to the six ASM tables.

    ``source_format`` is ``"oneroster-1.1"``, ``"oneroster-1.2"`` or ``"asm"``
    (plain ``"oneroster"``: the version :func:`~rostergate.formats.read.detect.oneroster_version` finds);
    ``as_of`` (default: today) decides which enrolments/roles are current.
    ASM input is normalised (template column order, allowed extra columns) and
    re-emitted without filtering; the mapping does not apply to it.
    """
    src_dir = Path(src_dir)
    if source_format == "oneroster":
        source_format = f"oneroster-{oneroster_version(src_dir)}"
    if source_format not in SOURCE_FORMATS:
        raise ValueError(f"source_format must be one of {SOURCE_FORMATS}, got {source_format!r}")
    mapping = mapping or Mapping()
    as_of = as_of or dt.date.today()
    ledger = Ledger()
    try:
        if source_format == "asm":
            tables, lineage = reemit_asm(src_dir, ledger)
        else:
            tables, lineage = OneRosterToAsm(src_dir, source_format, mapping, as_of, ledger).run()
            tables = apply_prefix(tables, mapping.id_prefix)
    except Fatal as fatal:
        return Conversion(source_format=source_format, tables=_empty_tables(),
                          issues=[*ledger.issues, fatal.issue],
                          lineage={n: lineage_frame("", pd.Series(dtype="int64")) for n in FILES})
    conversion = Conversion(
        source_format=source_format, tables=tables, drops=ledger.drops(), counts=ledger.counts,
        lineage=lineage, dropped_rows=ledger.dropped_rows(),
    )
    conversion.issues = ledger.issues + drop_issues(conversion.drops, conversion.dropped_rows)
    return conversion


def check_output(conversion: Conversion) -> ValidationResult:
    """Apple's rules (the asm profile) on the six tables as they would be written.

    A table is checked as its frame where writing and re-reading it certainly gives the
    frame back (:meth:`~.asmwrite.Serialised.check_input`), else as its CSV bytes; see
    :func:`trace_to_input` for placing what is found at the upload.
    """
    files = {name: serialise(frame).check_input(frame) for name, frame in conversion.tables.items()}
    return validate_asm_files(files, profile="asm")


def trace_to_input(result: ValidationResult, conversion: Conversion, mapping: Mapping | None = None) -> list[Issue]:
    """The errors an output check (``result``, on ``conversion``'s tables) found, each placed at
    the uploaded file, line and column the value came from.

    The district never saw the converted files: a report naming ``students.csv:501`` of the
    output sends them looking in a file they do not have. Through the lineage (the source
    file and line of every output row) each error is moved to its source row; the message
    keeps the ASM file and column it would have broken. An error without a row (a file-level
    one) stays on the output file. Codes become ``output.<code>``.
    """
    mapping = mapping or Mapping()
    traced = []
    for i in result.errors:
        file, line, column = i.file, i.line, i.column
        where = f"{i.file} {i.column}" if i.column else f"{i.file}"
        lineage = conversion.lineage.get(i.file or "")
        if lineage is not None and i.line is not None and 0 <= i.line - 2 < len(lineage):
            row = i.line - 2
            file = str(lineage["source_file"].iat[row])
            line = int(lineage["source_line"].to_numpy()[row])
            column = source_column(i.file or "", i.column, conversion.source_format, mapping) if i.column else None
        traced.append(Issue("error", "output." + i.code,
                            f"the converted ASM files break a rule ({where}, from this value): {i.message}",
                            file, line, column, i.value))
    return traced


def write_asm_zip(conversion: Conversion, out_path: Path) -> None:
    """Write the six tables as one deterministic ZIP (see :mod:`.asmwrite`)."""
    if not conversion.ok:
        raise ValueError("refusing to write a failed conversion: " +
                         "; ".join(i.message for i in conversion.issues if i.severity == "error"))
    write_tables_zip(conversion.tables, out_path)


def conversion_summary(conversion: Conversion) -> str:
    """Human text for the tenant's report: counts per file and every drop reason."""
    lines = [f"Conversion from {conversion.source_format} to Apple School Manager"]
    errors = [i for i in conversion.issues if i.severity == "error"]
    for issue in errors:
        lines.append(f"  ERROR {issue.to_text()}")
    if errors:
        return "\n".join(lines) + "\n"
    lines.append("Output rows:")
    for name, count in conversion.output_counts.items():
        lines.append(f"  {name:<15} {count:>9}")
    lines.append("Source rows (read = used + left out):")
    first = conversion.dropped_rows.groupby(["file", "reason"], sort=False).head(3)  # lines to look at
    examples = {key: [str(v) for v in group["line"]] for key, group in first.groupby(["file", "reason"])}
    for file, c in sorted(conversion.counts.items()):
        lines.append(f"  {file:<20} {c.input:>9} = {c.output:>9} + {sum(c.dropped.values()):>9}")
        for reason, count in sorted(c.dropped.items()):
            at = examples.get((file, reason), [])
            where = f" ({'line' if count == 1 else 'lines'} {', '.join(at)}{', …' if count > 3 else ''})" if at else ""
            lines.append(f"      {count:>9}  {reason}: {reason_message(reason)}{where}")
    others = [i for i in conversion.issues if not i.code.startswith("convert.dropped.")]
    if others:
        lines.append("Notes:")
        lines.extend(f"  {i.severity}: {i.to_text()}" for i in others)
    return "\n".join(lines) + "\n"


def render_preview(src_dir: Path, source_format: str, mapping: Mapping | None, n: int,
                   as_of: dt.date | None = None) -> str:
    """The first ``n`` records of each output file beside their source rows, as plain text.

    For every record: each ASM column, the rule that fills it, and the mapped
    value, after the source ``file:line`` and its values (SchoolMint's
    "mapped value" preview, peers.md §1).
    """
    src_dir = Path(src_dir)
    conversion = convert_dir(src_dir, source_format, mapping, as_of)
    mapping = mapping or Mapping()
    if not conversion.ok:
        return conversion_summary(conversion)
    sources: dict[str, tuple[pd.DataFrame, pd.Series]] = {}
    out: list[str] = []
    for name in sorted(conversion.tables):
        table, lineage = conversion.tables[name], conversion.lineage[name]
        out.append(f"== {name}: {len(table)} row(s), showing {min(n, len(table))}")
        rules = describe_rules(name, source_format, mapping, list(table.columns))
        for pos in range(min(n, len(table))):
            src_file = str(lineage["source_file"].iat[pos])
            src_line = int(lineage["source_line"].to_numpy()[pos])
            if src_file not in sources:
                sources[src_file] = read_source(src_dir, src_file)
            source, positions = sources[src_file]
            row = source.iloc[int(positions[src_line])] if src_line in positions.index else None
            out.append(f"-- record {pos + 1} <- {src_file}:{src_line}")
            if row is not None:
                shown = [f"{k}={v!r}" for k, v in row.items() if v != "" and not str(k).startswith("_")]
                out.append("   source: " + ", ".join(shown))
            width = max(len(c) for c in table.columns)
            for column in table.columns:
                out.append(f"   {column:<{width}}  {rules.get(column, ''):<40}  {table[column].iat[pos]!r}")
        out.append("")
    out.append(conversion_summary(conversion))
    return "\n".join(out)
