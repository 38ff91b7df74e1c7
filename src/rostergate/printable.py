"""Text that is safe to show on an operator's terminal.

Upload names, CSV values and key comments come from tenants. Printed raw, a name
such as ``"\\x1b]0;pwned\\x07x.zip"`` would drive the operator's terminal (set its
title, move the cursor, hide lines), and bidi overrides (U+202E) would show
``cod.exe`` for ``exe.doc``. Every character of Unicode category ``Cc``
(C0, DEL, C1) and every bidi/format control is shown as an escape instead.
"""

from __future__ import annotations

import re

# C0 and DEL and C1 controls; LRM/RLM, ALM, bidi embeddings/overrides and isolates.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
# What json.dumps leaves raw: it escapes C0 inside strings, and outside them there are only our own newlines.
_UNSAFE_IN_JSON = re.compile(f"[\x7f-\x9f{_BIDI}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every terminal control character escaped (``\\x1b``, ``\\u202e``).

    ``keep_newlines`` leaves ``\\n`` alone, for multi-line output whose lines we
    composed ourselves; a single value (a table cell) escapes it too.
    """
    if text.isprintable():  # no Cc or Cf character at all (the common case: a table of 1000 runs)
        return text
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)


def json_safe(document: str) -> str:
    """A JSON text with the controls that ``json.dumps(ensure_ascii=False)`` leaves raw (C1, bidi) as ``\\uXXXX``.

    Still the same JSON value: ``\\u0085`` and a raw U+0085 decode alike.
    """
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", document)
