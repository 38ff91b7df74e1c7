"""Validation issues as data.

An :class:`Issue` is one finding about an upload: what is wrong (a stable dotted
``code``), where (``file``, ``line`` with the header as line 1, ``column``), the
offending ``value`` and a human ``message`` that says how to fix it. Issues are
plain data so that the CLI, the history store and the uploader's report all
render the same facts.

Issues are normally built from the catalogue (:mod:`rostergate.formats.catalogue`)
so that one code always has the same default severity, wording and fix hint.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Issue:
    severity: Severity
    code: str
    message: str
    file: str | None = None
    line: int | None = None
    column: str | None = None
    value: str | None = None
    #: the catalogue's fix hint, rendered (``message`` ends with it too); not part of the
    #: ``validate`` contract's shape, only of the JSON report (:mod:`rostergate.runs.reports`)
    hint: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of the ``validate`` contract (without ``hint``)."""
        data = asdict(self)
        del data["hint"]
        return data

    def to_text(self) -> str:
        """``file:line - column = 'value' message`` (Claris-style, one line)."""
        where = self.file or "upload"
        if self.line is not None:
            where = f"{where}:{self.line}"
        what = ""
        if self.column is not None:
            what = f"{self.column} = '{self.value}' " if self.value is not None else f"{self.column}: "
        return f"{where} - {what}{self.message}"


@dataclass(slots=True)
class ValidationResult:
    """Outcome of validating one upload.

    ``format`` is ``"asm"``, ``"oneroster-1.1"``, ``"oneroster-1.2"`` or ``None``
    when the format could not be recognised.
    """

    format: str | None
    issues: list[Issue] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not any(i.severity == "error" for i in self.issues)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def codes(self) -> Counter[str]:
        """How many issues of each code (summary lines count once)."""
        return Counter(i.code for i in self.issues)

    def to_dict(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "format": self.format,
            "issues": [i.to_dict() for i in self.issues],
        }
