"""The raw structure of CSV bytes: where quotes and line ends really are.

pyarrow parses fast but forgives: a double quote inside an unquoted field is kept
as a literal (``s"0``), text after a closing quote is glued on (``"s"0`` reads
``s0``), a carriage return alone ends a line, and blank lines vanish without a
trace. RFC 4180 (oneroster.md §2 G1, G2) and Apple (asm.md §1.1: quotes escaped
with a backslash, UNIX line ends) allow none of that, and a report must name the
physical line of a row even when values span lines or blank lines sit between
rows. :func:`scan` answers those questions from the bytes with numpy, over the
positions of the few special bytes (quotes, line ends), a few megabytes at a
time, never byte by byte in Python.

The quote model is RFC 4180's. By position in the file, quotes alternate between
opening and closing a quoted field: an opening quote must start a field (after a
separator, a line end, or the closing quote it doubles, ``""``), a closing quote must
end one (before a separator, a line end, or the quote it doubles). A quote anywhere
else is *bare*: pyarrow reads an opening one as text (so it is taken out of the
sequence and the rest judged again: in ``a""`` both quotes are text) and a closing
one still closes. A line end
after an odd number of quotes lies inside a quoted value. In Apple's dialect
(``escape_char``) a quote or line end after an odd run of backslashes is escaped
and plays no part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rostergate.formats.arrowops import Mask, Positions

_QUOTE, _LF, _CR = 34, 10, 13
_CHUNK = 1 << 23  # bytes judged per numpy pass: bounds the memory of quote-heavy files
#: Bare quotes located exactly; past this many the rest are counted from one last pass.
_MAX_BARE_QUOTES = 50

Escaped = Callable[[Positions], Mask]


@dataclass
class Structure:
    """What :func:`scan` found in one file's bytes (offsets are byte offsets)."""

    #: the physical line (1-based) on which each non-empty record starts; index 0 is the header
    #: (only when :func:`scan` was asked for records)
    record_lines: Positions | None = None
    #: the byte offset at which each of those records starts
    record_starts: Positions | None = None
    #: offsets of quotes that break RFC 4180 (the first ones, see ``bare_quote_count``)
    bare_quotes: list[int] = field(default_factory=list)
    #: how many such quotes in all
    bare_quote_count: int = 0
    #: the offset of the quote that opens a value which is never closed, if any
    unclosed_quote: int | None = None
    #: line ends that are a carriage return alone, outside quoted values
    cr_line_ends: int = 0
    #: line ends inside values (quoted, or escaped in Apple's dialect): values holding line breaks
    inner_line_ends: int = 0


def scan(data: bytes, delimiter: str, escape_char: str | None = None, *, records: bool = False) -> Structure:
    """Judge the quotes of ``data`` (UTF-8, no BOM) and, with ``records`` or when it holds a
    carriage return, its line ends: which end a record, which are CR alone."""
    arr = np.frombuffer(data, dtype=np.uint8)
    n = len(arr)
    out = Structure()
    escaped = _escaper(arr, escape_char) if escape_char and escape_char.encode() in data else None
    has_quotes, has_cr = b'"' in data, b"\r" in data
    want_ends = records or has_cr
    delim = delimiter.encode()[0]
    parity = 0  # quotes kept so far, modulo 2
    last_quote = -1
    record_ends: list[Positions] = []
    record_start_lines: list[Positions] = []
    counted = 0  # line ends before the chunk
    for a in range(0, max(n, 1), _CHUNK):
        b = min(a + _CHUNK, n)
        part = arr[a:b]
        quotes = np.flatnonzero(part == _QUOTE) + a if has_quotes else np.zeros(0, np.int64)
        if escaped is not None and len(quotes):
            quotes = quotes[~escaped(quotes)]
        before = parity
        if len(quotes):
            quotes = _clean(arr, quotes, parity, last_quote, delim, out, escaped)
            parity = (parity + len(quotes)) % 2
            last_quote = int(quotes[-1]) if len(quotes) else last_quote
        if not want_ends:
            continue
        ends, cr_only = _line_ends(arr, part, a, has_cr)
        outside = (np.searchsorted(quotes, ends) + before) % 2 == 0
        if escaped is not None and len(ends):
            outside &= ~escaped(ends)
        out.inner_line_ends += int(len(ends) - outside.sum())
        record_ends.append(ends[outside])
        record_start_lines.append(counted + np.flatnonzero(outside) + 2)  # the line after each record end
        counted += len(ends)
        if len(cr_only):
            out.cr_line_ends += int(np.isin(cr_only, ends[outside], assume_unique=True).sum())
    if parity == 1:
        out.unclosed_quote = last_quote
    if records:
        ends_all = np.concatenate(record_ends) if record_ends else np.zeros(0, np.int64)
        starts = np.concatenate(([0], ends_all + 1)).astype(np.int64)
        lines = np.concatenate(([1], *record_start_lines)).astype(np.int64)
        stops = np.concatenate((ends_all, [n])).astype(np.int64)
        length = stops - starts
        first = arr[np.minimum(starts, n - 1)] if n else np.zeros(len(starts), np.uint8)
        filled = (length > 1) | ((length == 1) & (first != _CR))  # not a blank line (LF or CRLF)
        out.record_starts, out.record_lines = starts[filled], lines[filled]
    return out


def _line_ends(arr: np.ndarray, part: np.ndarray, a: int, has_cr: bool) -> tuple[Positions, Positions]:
    """The line ends in ``part`` (at offset ``a`` of ``arr``): LF, or a CR not followed by LF."""
    lf = np.flatnonzero(part == _LF) + a
    if not has_cr:
        return lf, np.zeros(0, np.int64)
    cr = np.flatnonzero(part == _CR) + a
    cr_only = cr[arr[np.minimum(cr + 1, len(arr) - 1)] != _LF]  # a CR as the very last byte ends a line too
    return np.union1d(lf, cr_only), cr_only


def line_of(data: bytes, offset: int) -> int:
    """The physical line (1-based) holding byte ``offset`` (LF, CRLF and CR alone each end a line)."""
    head = data[:offset]
    return head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1


def _clean(arr: np.ndarray, quotes: Positions, parity: int, last_kept: int, delim: int,
           out: Structure, escaped: Escaped | None = None) -> Positions:
    """``quotes`` (one chunk's; the file's kept quotes so far have ``parity``, the last one at
    ``last_kept``) without the bare opening ones, which pyarrow reads as text; every bare quote
    is recorded in ``out``. With ``escaped`` (Apple's dialect) an escaped separator or line end
    before a quote is text, so it does not start a field."""
    n = len(arr)
    start = 0  # quotes before ``start`` are judged
    while start < len(quotes):
        q = quotes[start:]
        opening = (np.arange(start, len(quotes)) + parity) % 2 == 0
        prev = arr[np.maximum(q - 1, 0)]
        nxt = arr[np.minimum(q + 1, n - 1)]
        # the quote before is the closing one this one doubles only if it was kept (not text itself)
        kept_before = np.concatenate(([last_kept], quotes[:-1]))[start:] == q - 1
        boundary = (prev == delim) | (prev == _LF) | (prev == _CR)
        if escaped is not None and boundary.any():
            boundary &= ~escaped(np.maximum(q - 1, 0))
        at_start = (q == 0) | boundary | kept_before
        at_end = (q == n - 1) | (nxt == delim) | (nxt == _LF) | (nxt == _CR) | (nxt == _QUOTE)
        hits = np.flatnonzero(np.where(opening, ~at_start, ~at_end))
        if not len(hits):
            break
        if len(out.bare_quotes) >= _MAX_BARE_QUOTES:
            out.bare_quote_count += len(hits)  # counted from this pass: an estimate past the cap
            break
        first = int(hits[0])
        out.bare_quotes.append(int(q[first]))
        out.bare_quote_count += 1
        if opening[first]:
            quotes = np.delete(quotes, start + first)  # a literal quote: the ones after change role
            start += first
        else:
            start += first + 1
    return quotes


def _escaper(arr: np.ndarray, escape_char: str) -> Escaped:
    """A test telling, for byte offsets, whether an odd run of ``escape_char`` precedes each."""
    esc = np.flatnonzero(arr == ord(escape_char))
    breaks = np.concatenate(([True], np.diff(esc) != 1))
    run_first = esc[breaks][np.cumsum(breaks) - 1]  # for each escape byte, where its run starts

    def escaped(positions: Positions) -> Mask:
        at = np.searchsorted(esc, positions) - 1  # the last escape byte before each position
        found = at >= 0
        at = np.maximum(at, 0)
        adjacent = found & (esc[at] == positions - 1)
        result: Mask = adjacent & ((positions - run_first[at]) % 2 == 1)
        return result

    return escaped


def field_at(data: bytes, offset: int, delimiter: str) -> tuple[int, str]:
    """The position (0-based) and raw text of the field holding byte ``offset``, within its line.

    For the few offenders a report shows: plain Python over one line.
    """
    start = max(data.rfind(b"\n", 0, offset), data.rfind(b"\r", 0, offset)) + 1
    end = min((e for e in (data.find(b"\n", offset), data.find(b"\r", offset)) if e >= 0), default=len(data))
    text = data[start:end]
    delim = delimiter.encode()
    position, field_start, quoted = 0, 0, False
    for i in range(offset - start):  # one line, for at most a report's worth of offenders
        byte = text[i:i + 1]
        if byte == b'"':
            quoted = not quoted
        elif byte == delim and not quoted:
            position, field_start = position + 1, i + 1
    field_end = text.find(delim, offset - start)
    raw = text[field_start: field_end if field_end >= 0 else len(text)]
    return position, raw.decode("utf-8", "replace")
