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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from isal import isal_zlib

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_DOS_DATE, _DOS_TIME = (0 << 9) | (1 << 5) | 1, 0  # 1980-01-01 00:00 in MS-DOS form
_FILE_MODE = 0o100644 << 16
_VERSION = 20  # "version needed to extract": 2.0, deflate
_MADE_BY = (3 << 8) | 20  # unix (so the external attributes are a file mode), 2.0
_ZIP32_LIMIT = 0xFFFFFFFF - 2**20  # total content at which sizes or offsets could overflow ZIP32
_LEVEL = 1  # deflate level: fixed for byte-identical output; 1 is ~5x faster than 6 for ~25% more bytes


def _strings(values: pd.Series | Iterable[str]) -> pa.Array:
    """Any column as one contiguous large_string Arrow array, nulls as ``""``."""
    if isinstance(values, pd.Series):
        array = pa.array(values.astype("str"))
    else:
        array = pa.array(list(values), type=pa.large_string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    array = array.cast(pa.large_string())
    return pc.fill_null(array, "") if array.null_count else array


#: Bytes that make :func:`escape_column` quote or escape a value (and NUL, which a reader
#: reports as binary): a column without any of them is written exactly as it is.
_SPECIAL = (b'"', b"\\", b"\r", b"\n", b" ", b",", b"\t", b"\x00")


def is_verbatim(frame: pd.DataFrame) -> bool:
    """Whether :func:`csv_bytes` writes every header name and value of ``frame`` as it is.

    Then the CSV is just the values joined by commas and line feeds, and parsing it
    gives ``frame`` back exactly: a check of the frame is a check of the bytes.
    """
    if any(ch in str(name).encode("utf-8") for name in frame.columns for ch in _SPECIAL):
        return False
    special = b"".join(_SPECIAL)
    for column in frame.columns:
        if str(frame[column].dtype) != "str" or frame[column].isna().any():
            return False  # the writer would turn it into strings: the frame is not what the bytes say
        data = _concatenated(_strings(frame[column]))
        if len(data.translate(None, special)) != len(data):  # one pass deletes every special byte
            return False
    return True


def escape_column(values: pd.Series | Iterable[str]) -> pa.Array:
    """One column's cells as Apple-quoted CSV text (vectorised; see the module docstring).

    The column's bytes are scanned once for the few special characters; most
    columns (ids) hold none, and then no per-value work is done at all.
    """
    text = _strings(values)
    data = _concatenated(text)
    if any(ch in data for ch in (b'"', b"\\", b"\r", b"\n")):
        text = pc.replace_substring(text, "\r\n", "\n")
        text = pc.replace_substring(text, "\r", "\n")
        text = pc.replace_substring(text, "\\", "\\\\")
        text = pc.replace_substring(text, '"', '\\"')
        text = pc.replace_substring(text, "\n", "\\\n")
    if any(ch in data for ch in (b" ", b",", b"\t")):
        needs_quotes = pc.match_substring_regex(text, "[ ,\t]")
        quoted = pc.binary_join_element_wise(_large('"'), text, _large('"'), _large(""))
        text = pc.if_else(needs_quotes, quoted, text)
    return text


def _concatenated(lines: pa.Array) -> bytes:
    """The values of a null-free string array back to back (its data buffer, sliced)."""
    return bytes(_data_view(lines))


def _data_view(lines: pa.Array) -> memoryview:
    """:func:`_concatenated` without the copy: a view of the array's data buffer."""
    lines = lines.cast(pa.large_string())
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset: lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    if data is None or len(lines) == 0:
        return memoryview(b"")
    return memoryview(data)[int(offsets[0]): int(offsets[-1])]


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """Serialise ``frame`` (all values strings) as an ASM CSV, header first, LF after every row."""
    header = ",".join(escape_column([str(c) for c in frame.columns]).to_pylist()).encode("utf-8") + b"\n"
    if frame.empty:
        return header
    columns = [escape_column(frame[c]) for c in frame.columns]
    # LF goes onto the last column ("value" + LF + ""), which is cheaper than a second pass over whole rows
    columns[-1] = pc.binary_join_element_wise(columns[-1], _large(""), _large("\n"))
    lines = columns[0] if len(columns) == 1 else pc.binary_join_element_wise(*columns, _large(","))
    return b"".join((header, _data_view(lines)))


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """:func:`write_zip` into memory: the ZIP of ``files`` (name → content) as bytes."""
    buffer = io.BytesIO()
    write_zip(files, buffer)
    return buffer.getvalue()


def write_zip(files: Mapping[str, bytes], out: BinaryIO) -> None:
    """Write a deterministic ZIP of ``files`` (name → content), entries sorted at the root, to ``out``.

    Each entry is deflated and written before the next one is, so the whole archive is never
    held in memory (at 1,000,000 students it is about a fifth of a GB, and joining it was a
    second copy). Deflate comes from ISA-L (``isal``), about 3× faster than zlib at level 1 and
    a little smaller; zipfile cannot take another compressor, so the container (local headers,
    central directory, end record: APPNOTE 4.3) is written here. Entries or archives past the
    4 GiB ZIP32 limits go through zipfile, which writes ZIP64 (``out`` must then be seekable).
    """
    names = sorted(files)
    for name in names:
        if "/" in name or "\\" in name:
            raise ValueError(f"ASM files sit at the ZIP root; got {name!r}")
    if sum(len(files[name]) for name in names) >= _ZIP32_LIMIT:
        _zipfile_write(files, names, out)
        return
    central, offset = [], 0
    for name in names:
        data, encoded = files[name], name.encode("ascii")
        compressor = isal_zlib.compressobj(_LEVEL, isal_zlib.DEFLATED, -15)  # raw deflate
        packed = compressor.compress(data) + compressor.flush()
        crc = isal_zlib.crc32(data)
        fields = (_VERSION, 0, 8, _DOS_TIME, _DOS_DATE, crc, len(packed), len(data), len(encoded))
        out.write(struct.pack("<I5H3I2H", 0x04034B50, *fields, 0) + encoded)
        out.write(packed)
        del packed
        central += [struct.pack("<IH5H3I5HII", 0x02014B50, _MADE_BY, *fields, 0, 0, 0, 0, _FILE_MODE, offset),
                    encoded]
        offset += 30 + len(encoded) + fields[6]
    directory = b"".join(central)
    out.write(directory)
    out.write(struct.pack("<I4H2IH", 0x06054B50, 0, 0, len(names), len(names), len(directory), offset, 0))


def _zipfile_write(files: Mapping[str, bytes], names: list[str], out: BinaryIO) -> None:
    """:func:`write_zip` through zipfile (zlib, ZIP64 where needed) for archives past 4 GiB."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_LEVEL) as archive:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr means a mode
            info.external_attr = _FILE_MODE
            archive.writestr(info, files[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=_LEVEL)


def write_tables_zip(tables: Mapping[str, pd.DataFrame], out_path: Path) -> None:
    """Write ``tables`` (file name → frame) as one deterministic ASM ZIP at ``out_path``."""
    files = {name: csv_bytes(frame) for name, frame in tables.items()}
    with open(out_path, "wb") as out:
        write_zip(files, out)
