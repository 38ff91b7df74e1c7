"""Rendering a :class:`~rostergate.formats.issues.ValidationResult` for people and programs.

Text: one line per issue, ``file:line - column = 'value' reason; hint`` (the
Claris report shape, asm.md §4) followed by ``[severity code]``, under a
one-line summary. JSON: ``result.to_dict()`` (the ``validate`` contract).
"""

from __future__ import annotations

import json

from rostergate.formats.issues import ValidationResult


def summary(result: ValidationResult) -> str:
    errors, warnings = len(result.errors), len(result.warnings)
    state = "valid" if result.valid else "invalid"
    return f"{state} ({result.format or 'unknown format'}): {errors} error{'s' * (errors != 1)}, " \
           f"{warnings} warning{'s' * (warnings != 1)}"


def render_text(result: ValidationResult) -> str:
    """The human report: a summary line, then errors, then warnings."""
    lines = [summary(result)]
    for severity in ("error", "warning"):
        for i in result.issues:
            if i.severity == severity:
                lines.append(f"{i.to_text()} [{i.severity} {i.code}]")
    return "\n".join(lines) + "\n"


def render_json(result: ValidationResult, indent: int | None = 2) -> str:
    return json.dumps(result.to_dict(), indent=indent, ensure_ascii=False)
