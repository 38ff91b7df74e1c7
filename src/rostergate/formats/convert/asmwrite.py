"""Deterministic Apple School Manager CSV and ZIP writing.

Contract: the same tables give the same bytes, always.

CSV text (asm.md §1.1): UTF-8 without BOM, LF line ends, comma separator, the
header as given. Quoting follows Apple's wording literally:

* a value is wrapped in straight double quotes when it contains a space or a
  comma (we also count a tab as a space) and is left bare otherwise;
* a quotation mark inside a value is escaped with a backslash (``\\"``), as in
  Apple's only example; this is *not* RFC 4180 doubling;
* a line break inside a value is escaped the same way: a backslash followed by
  the line break, CR and CRLF first normalised to LF (Apple: "UNIX newline").
  A record therefore only ends at an unescaped LF;
* a backslash is itself escaped (``\\\\``). Apple names only quotes and line
  breaks, but once backslash is the escape character a lone one is ambiguous
  (``end\\`` before a comma would swallow the separator), so any reader that
  honours ``\\"`` reads ``\\\\`` back as one backslash.

:mod:`rostergate.formats.read.csvio` reads this dialect back (``escape_char=schema.asm.ESCAPE``);
a reader must use it rather than RFC 4180 parsing when values hold quotes.

ZIP (asm.md §2.3): the CSVs at the root, sorted by name, deflate level 1 (ISA-L), a
fixed 1980-01-01 timestamp, regular-file mode 0644, no extra fields or comment. The
bytes are stable for a given ``isal`` version; an upgrade of it may change them.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from isal import isal_zlib

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_DOS_DATE, _DOS_TIME = (0 << 9) | (1 << 5) | 1, 0  # 1980-01-01 00:00 in MS-DOS form
_FILE_MODE = 0o100644 << 16
_VERSION = 20  # "version needed to extract": 2.0, deflate
_MADE_BY = (3 << 8) | 20  # unix (so the external attributes are a file mode), 2.0
_ZIP32_LIMIT = 0xFFFFFFFF - 2**20  # total content at which sizes or offsets could overflow ZIP32
_LEVEL = 1  # deflate level: fixed for byte-identical output; 1 is ~5x faster than 6 for ~25% more bytes


def _strings(values: pd.Series | Iterable[str]) -> pa.ChunkedArray:
    """Any column as large_string Arrow chunks (a pandas Arrow column's own: no copy), nulls as ``""``."""
    if isinstance(values, pd.Series):
        array = pa.array(values.astype("str"))
    else:
        array = pa.array(list(values), type=pa.large_string())
    chunked = array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])
    chunked = chunked.cast(pa.large_string())
    return pc.fill_null(chunked, "") if chunked.null_count else chunked


#: Bytes that make :func:`_escaped` quote or escape a value (and NUL, which a reader
#: reports as binary): a column without any of them is written exactly as it is.
_SPECIAL = (b'"', b"\\", b"\r", b"\n", b" ", b",", b"\t", b"\x00")

Buffer = bytes | memoryview


_BATCH_ROWS = 1 << 18  # rows written at a time: a batch of a big table's CSV is a few MB


@dataclass(frozen=True)
class Serialised:
    """One table ready to be written as an ASM CSV: its header line, each column's cells as
    CSV text (escaped and quoted where needed), and whether every header name and value is
    written as it is.

    ``verbatim`` means the CSV is just the values joined by commas and line feeds, so
    parsing it gives the frame back exactly: a check of the frame is a check of the bytes.
    The CSV itself is made by :meth:`chunks`, a batch of rows at a time, so a big table's
    CSV is never whole in memory (columns that needed nothing are the frame's own arrays).
    """

    header: bytes
    columns: tuple[pa.ChunkedArray, ...]
    verbatim: bool
    plain: bool  # no value needed quoting or escaping

    def chunks(self) -> Iterator[Buffer]:
        """The CSV's bytes: the header line, then the rows a batch at a time (LF after every row)."""
        yield self.header
        rows = len(self.columns[0]) if self.columns else 0
        for start in range(0, rows, _BATCH_ROWS):
            batch = [column.slice(start, _BATCH_ROWS) for column in self.columns]
            if self.plain:  # nothing to quote: Arrow's CSV writer joins the rows (faster than joining columns)
                out = pa.BufferOutputStream()
                pacsv.write_csv(pa.table(batch, names=[f"c{i}" for i in range(len(batch))]), out,
                                pacsv.WriteOptions(include_header=False, quoting_style="none"))
                yield memoryview(out.getvalue())
                continue
            # LF goes onto the last column ("value" + LF + ""), cheaper than a second pass over whole rows
            batch[-1] = pc.binary_join_element_wise(batch[-1], _large(""), _large("\n"))
            lines = batch[0] if len(batch) == 1 else pc.binary_join_element_wise(*batch, _large(","))
            yield _data_view(lines.combine_chunks())

    def joined(self) -> bytes:
        """The whole CSV as one ``bytes``."""
        return b"".join(self.chunks())

    def check_input(self, frame: pd.DataFrame) -> pd.DataFrame | bytes:
        """What the output check reads for ``frame`` (the table this was made from): the frame
        itself when verbatim (parsing the CSV gives it back exactly), else the CSV's bytes."""
        return frame if self.verbatim else self.joined()


def serialise(frame: pd.DataFrame) -> Serialised:
    """``frame`` (all values strings) prepared as an ASM CSV (one scan per column; see :class:`Serialised`)."""
    header, plain_header = _escaped(_strings([str(c) for c in frame.columns]))
    header_line = ",".join(header.to_pylist()).encode("utf-8") + b"\n"
    verbatim, plain_values = plain_header, True
    columns = []
    for name in frame.columns:
        values = frame[name]
        text, plain = _escaped(_strings(values))
        plain_values = plain_values and plain
        # the writer turns other types and missing values into text: then the frame is not what the bytes say
        verbatim = verbatim and plain and str(values.dtype) == "str" and not values.isna().any()
        columns.append(text)
    return Serialised(header_line, tuple(columns), verbatim, plain_values)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """:func:`serialise` as one ``bytes``."""
    return serialise(frame).joined()


def csv_size_bound(frame: pd.DataFrame) -> int:
    """A size the CSV of ``frame`` cannot exceed: every byte escaped, every value quoted and
    followed by a separator, a value that is not a string yet taken as 64 bytes."""
    bound = 3 * sum(len(str(c).encode("utf-8")) + 3 for c in frame.columns)
    for name in frame.columns:
        values = frame[name]
        per_value = 3 if str(values.dtype) == "str" else 3 + 2 * 64
        bound += per_value * len(values) + (2 * int(values.array.nbytes) if str(values.dtype) == "str" else 0)
    return bound


def _escaped(text: pa.ChunkedArray) -> tuple[pa.ChunkedArray, bool]:
    """One column's cells (null-free large_string chunks) as Apple-quoted CSV text, and whether
    they needed nothing (see the module docstring).

    The column's bytes are scanned once for the few special characters; most columns
    (ids) hold none, and then no per-value work is done at all.
    """
    found: set[bytes] = set()
    for chunk in text.chunks:
        found |= _special_bytes(_data_view(chunk))
    if not found:
        return text, True
    if found & {b'"', b"\\", b"\r", b"\n"}:
        text = pc.replace_substring(text, "\r\n", "\n")
        text = pc.replace_substring(text, "\r", "\n")
        text = pc.replace_substring(text, "\\", "\\\\")
        text = pc.replace_substring(text, '"', '\\"')
        text = pc.replace_substring(text, "\n", "\\\n")
    if found & {b" ", b",", b"\t"}:
        needs_quotes = pc.match_substring_regex(text, "[ ,\t]")
        quoted = pc.binary_join_element_wise(_large('"'), text, _large('"'), _large(""))
        text = pc.if_else(needs_quotes, quoted, text)
    return text, False


_SCAN_BLOCK = 16 << 20


def _special_bytes(data: memoryview) -> set[bytes]:
    """Which of :data:`_SPECIAL` occur in ``data``, read in blocks (a column's bytes are never copied whole)."""
    found: set[bytes] = set()
    for start in range(0, len(data), _SCAN_BLOCK):
        block = bytes(data[start: start + _SCAN_BLOCK])
        found.update(ch for ch in _SPECIAL if ch not in found and ch in block)
    return found


def _data_view(lines: pa.Array) -> memoryview:
    """The values of a null-free string array back to back: a view of its data buffer (no copy)."""
    lines = lines.cast(pa.large_string())
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset: lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    if data is None or len(lines) == 0:
        return memoryview(b"")
    return memoryview(data)[int(offsets[0]): int(offsets[-1])]


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """:func:`write_zip` into memory: the ZIP of ``files`` (name → content) as bytes."""
    buffer = io.BytesIO()
    write_zip(files, buffer)
    return buffer.getvalue()


def write_zip(files: Mapping[str, Buffer], out: BinaryIO) -> None:
    """Write a deterministic ZIP of ``files`` (name → content), entries sorted at the root, to ``out``."""
    stream = ZipStream(out, large=sum(len(data) for data in files.values()) >= _ZIP32_LIMIT)
    for name in sorted(files):
        stream.add(name, (files[name],))
    stream.close()


class ZipStream:
    """A deterministic ZIP written to ``out`` entry by entry: :meth:`add` each file in name order, then :meth:`close`.

    Each entry is deflated and written when it is added, so the archive is never held in
    memory, and a file's bytes may come in pieces (views of Arrow memory: no join). Deflate
    comes from ISA-L (``isal``), about 3× faster than zlib at level 1 and a little smaller;
    zipfile cannot take another compressor, so the container (local headers, central
    directory, end record: APPNOTE 4.3) is written here. A ``large`` archive (contents that
    may pass the 4 GiB ZIP32 limits) goes through zipfile, which writes ZIP64 (``out`` must
    then be seekable). Not thread-safe: one writer at a time.
    """

    def __init__(self, out: BinaryIO, *, large: bool = False) -> None:
        self._out = out
        self._archive = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_LEVEL) \
            if large else None
        self._central: list[bytes] = []
        self._offset = 0
        self._last: str | None = None

    def add(self, name: str, parts: Iterable[Buffer]) -> None:
        """Deflate and write one file (its bytes: ``parts`` back to back); names must come in sorted order."""
        if "/" in name or "\\" in name:
            raise ValueError(f"ASM files sit at the ZIP root; got {name!r}")
        if self._last is not None and name <= self._last:
            raise ValueError(f"ZIP entries are written in name order: {name!r} after {self._last!r}")
        self._last = name
        if self._archive is not None:
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr means a mode
            info.external_attr = _FILE_MODE
            self._archive.writestr(info, b"".join(parts), compress_type=zipfile.ZIP_DEFLATED, compresslevel=_LEVEL)
            return
        compressor = isal_zlib.compressobj(_LEVEL, isal_zlib.DEFLATED, -15)  # raw deflate
        packed, crc, size = [], 0, 0
        for part in parts:
            crc, size = isal_zlib.crc32(part, crc), size + len(part)
            packed.append(compressor.compress(part))
        packed.append(compressor.flush())
        encoded = name.encode("ascii")
        fields = (_VERSION, 0, 8, _DOS_TIME, _DOS_DATE, crc, sum(len(p) for p in packed), size, len(encoded))
        self._out.write(struct.pack("<I5H3I2H", 0x04034B50, *fields, 0) + encoded)
        for chunk in packed:
            self._out.write(chunk)
        self._central += [struct.pack("<IH5H3I5HII", 0x02014B50, _MADE_BY, *fields, 0, 0, 0, 0, _FILE_MODE,
                                      self._offset), encoded]
        self._offset += 30 + len(encoded) + fields[6]

    def close(self) -> None:
        """The central directory and end record: the archive is complete."""
        if self._archive is not None:
            self._archive.close()
            return
        count = len(self._central) // 2
        directory = b"".join(self._central)
        self._out.write(directory)
        self._out.write(struct.pack("<I4H2IH", 0x06054B50, 0, 0, count, count, len(directory), self._offset, 0))


def write_tables_zip(tables: Mapping[str, pd.DataFrame], out_path: Path) -> None:
    """Write ``tables`` (file name → frame) as one deterministic ASM ZIP at ``out_path``, a table at a time."""
    with open(out_path, "wb") as out:
        stream = ZipStream(out, large=zip64_needed(tables))
        for name in sorted(tables):
            stream.add(name, serialise(tables[name]).chunks())
        stream.close()


def zip64_needed(tables: Mapping[str, pd.DataFrame]) -> bool:
    """Whether the CSVs of ``tables`` could pass the ZIP32 limits (see :func:`csv_size_bound`)."""
    return sum(csv_size_bound(frame) for frame in tables.values()) >= _ZIP32_LIMIT
