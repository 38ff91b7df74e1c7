"""Text decoding with disclosure: whatever we convert, we say so.

:func:`decode` turns the raw bytes of one CSV file into UTF-8 bytes without a
BOM and lists what it found: a UTF-8 BOM (stripped, warned), UTF-16 with or
without BOM and Windows-1252 (converted with a warning, or rejected when the
policy is ``"reject"``), binary data and undecodable bytes (errors).
:func:`sniff_delimiter` recognises ``,``, ``;`` and tab from the header line.

Why this matters: Apple and OneRoster both require UTF-8 (asm.md §1.1,
oneroster.md §2 G3); Excel on Windows writes Windows-1252 or UTF-16 by default.
ASCII and valid UTF-8 input (the common case) is passed through without a copy.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Literal

from rostergate.formats.catalogue import issue
from rostergate.formats.issues import Issue

EncodingPolicy = Literal["convert", "reject"]

_BOM_UTF8 = b"\xef\xbb\xbf"
_CHUNK = 1 << 22


@dataclass
class Decoded:
    """Result of :func:`decode`. ``data`` is ``None`` when the text cannot be used."""

    data: bytes | None
    encoding: str
    issues: list[Issue] = field(default_factory=list)


def decode(raw: bytes, name: str, policy: EncodingPolicy = "convert") -> Decoded:
    """Return ``raw`` as UTF-8 bytes (no BOM) plus the issues found on the way."""
    if raw.startswith(_BOM_UTF8):
        body = raw[3:]
        bad = _first_invalid_utf8(body)
        if bad is None:
            return Decoded(body, "utf-8-sig", [issue("text.utf8_bom", file=name)])
        return Decoded(None, "unknown", [issue("text.encoding_invalid", file=name, offset=bad + 3)])
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _convert(raw, "utf-16", "UTF-16", name, policy)
    utf16 = _utf16_without_bom(raw)
    if utf16:
        return _convert(raw, utf16, "UTF-16", name, policy)
    if b"\x00" in raw:
        return Decoded(None, "binary", [issue("text.binary", file=name)])
    bad = _first_invalid_utf8(raw)
    if bad is None:
        return Decoded(raw, "utf-8")
    try:
        raw.decode("cp1252")
    except UnicodeDecodeError:
        return Decoded(None, "unknown", [issue("text.encoding_invalid", file=name, offset=bad)])
    return _convert(raw, "cp1252", "Windows-1252", name, policy)


def _convert(raw: bytes, codec: str, label: str, name: str, policy: EncodingPolicy) -> Decoded:
    if policy == "reject":
        return Decoded(None, codec, [issue("text.encoding_rejected", file=name, value=label)])
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        return Decoded(None, "unknown", [issue("text.encoding_invalid", file=name, offset=exc.start)])
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        return Decoded(None, "binary", [issue("text.binary", file=name)])
    return Decoded(text.encode("utf-8"), codec, [issue("text.encoding_converted", file=name, value=label)])


def _first_invalid_utf8(data: bytes) -> int | None:
    """Offset of the first byte that is not valid UTF-8, or ``None`` (chunked: no big copy)."""
    if data.isascii():
        return None
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    view = memoryview(data)
    for start in range(0, len(data), _CHUNK):
        chunk = view[start : start + _CHUNK]
        try:
            decoder.decode(chunk, final=start + _CHUNK >= len(data))
        except UnicodeDecodeError as exc:
            return start + exc.start
    return None


def _utf16_without_bom(raw: bytes) -> str | None:
    """Recognise BOM-less UTF-16 of mostly-ASCII text by its NUL byte pattern."""
    head = raw[:4096]
    if len(head) < 4 or b"\x00" not in head:
        return None
    even, odd = head[0::2], head[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def sniff_delimiter(data: bytes) -> str:
    """The delimiter of a CSV text, judged from its first line: ``,``, ``;`` or tab."""
    end = data.find(b"\n")
    header = data[: end if end >= 0 else 4096]
    counts = {d: header.count(d.encode()) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] > 0 else ","


DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tabs"}
