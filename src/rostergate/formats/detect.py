"""Recognising what an unpacked upload is.

``"oneroster-1.1"``/``"oneroster-1.2"`` when a manifest.csv is present (the
version read from it, oneroster.md §4), ``"asm"`` when Apple's file names
(students/staff/rosters/locations.csv, asm.md §1.1) or Apple headers are
present, and, without a manifest, OneRoster when the CSV headers start with
``sourcedId`` (so that the report can say "manifest.csv is missing" rather than
"unknown format"). ``None`` otherwise.
"""

from __future__ import annotations

from pathlib import Path

ASM_ONLY_FILES = {"students.csv", "staff.csv", "rosters.csv", "locations.csv"}
ASM_HEADER_HINTS = {"person_id", "roster_id", "location_id", "course_id", "class_id"}


def detect_format(folder: Path) -> str | None:
    """Return ``"asm"``, ``"oneroster-1.1"``, ``"oneroster-1.2"`` or ``None``. Never raises."""
    try:
        files = {p.name.casefold(): p for p in Path(folder).iterdir() if p.is_file()}
    except OSError:
        return None
    if "manifest.csv" in files:
        return f"oneroster-{_manifest_version(files['manifest.csv']) or _guess_version(files)}"
    if ASM_ONLY_FILES & set(files):
        return "asm"
    headers = {name: _header(p) for name, p in files.items() if name.endswith(".csv")}
    if any(ASM_HEADER_HINTS & set(h) for h in headers.values()):
        return "asm"
    if any(h[:1] == ["sourcedId"] for h in headers.values()):
        return f"oneroster-{_guess_version(files)}"
    return None


def _manifest_version(path: Path) -> str | None:
    for cells in _lines(path, 200):
        if len(cells) >= 2 and cells[0].strip() == "oneroster.version":
            value = cells[1].strip().strip('"')
            if value in ("1.1", "1.2", "1.2.1"):
                return value[:3]
    return None


def _guess_version(files: dict[str, Path]) -> str:
    if {"roles.csv", "userprofiles.csv"} & set(files):
        return "1.2"
    users = files.get("users.csv")
    if users is not None and "orgSourcedIds" not in _header(users) and "primaryOrgSourcedId" in _header(users):
        return "1.2"
    return "1.1"


def _header(path: Path) -> list[str]:
    first = next(iter(_lines(path, 1)), [])
    return [c.strip().strip('"') for c in first]


def _lines(path: Path, limit: int) -> list[list[str]]:
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError:
        return []
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if head.startswith(bom):
            text = head[len(bom):].decode(codec, "replace")
            break
    else:
        text = head.decode("utf-8", "replace")
    delimiter = max((",", ";", "\t"), key=lambda d: text.split("\n", 1)[0].count(d))
    return [line.rstrip("\r").split(delimiter) for line in text.split("\n")[:limit]]
