"""Small helpers for building broken uploads from the valid fixtures (tests only).

Test modules import them as ``from tests.formats import conftest as kit``.
"""

from __future__ import annotations

import csv
import io
import shutil
import struct
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
OR11 = FIXTURES / "oneroster-1.1-valid"
OR12 = FIXTURES / "oneroster-1.2-valid"
ASM = FIXTURES / "asm-valid"
SHARED = ROOT.parent / "shared"
OAT_SAMPLE = SHARED / "samples" / "oneroster" / "oat-sa-oneroster-import" / "data" / "samples" / "OneRosterv1p1BaseCSV"


def copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def write_rows(path: Path, table: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(table)
    path.write_text(buf.getvalue(), encoding="utf-8")


def edit(folder: Path, file: str, row: int, column: str, value: str) -> None:
    """Set ``column`` of data row ``row`` (0-based; line = row + 2) of ``file``."""
    table = rows(folder / file)
    table[row + 1][table[0].index(column)] = value
    write_rows(folder / file, table)


def add_row(folder: Path, file: str, values: dict[str, str]) -> None:
    table = rows(folder / file)
    table.append([values.get(c, "") for c in table[0]])
    write_rows(folder / file, table)


def copy_row(folder: Path, file: str, row: int, **changes: str) -> None:
    table = rows(folder / file)
    new = list(table[row + 1])
    for col, value in changes.items():
        new[table[0].index(col)] = value
    table.append(new)
    write_rows(folder / file, table)


def rename_user(folder: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in a OneRoster 1.2 folder's user ids: users.sourcedId and the
    roles' and enrolments' userSourcedId (``usr-s1`` -> ``usr-s1@north``: legal in OneRoster 1.2,
    not in ASM)."""
    for file, column in (("users.csv", "sourcedId"), ("roles.csv", "userSourcedId"),
                         ("enrollments.csv", "userSourcedId")):
        table = rows(folder / file)
        i = table[0].index(column)
        for row in table[1:]:
            row[i] = row[i].replace(old, new)
        write_rows(folder / file, table)


def rename_column(folder: Path, file: str, old: str, new: str) -> None:
    table = rows(folder / file)
    table[0][table[0].index(old)] = new
    write_rows(folder / file, table)


def drop_column(folder: Path, file: str, column: str) -> None:
    table = rows(folder / file)
    i = table[0].index(column)
    write_rows(folder / file, [r[:i] + r[i + 1:] for r in table])


def insert_column(folder: Path, file: str, position: int, name: str, value: str = "") -> None:
    table = rows(folder / file)
    write_rows(folder / file, [r[:position] + [name if k == 0 else value] + r[position:] for k, r in enumerate(table)])


def swap_columns(folder: Path, file: str, a: str, b: str) -> None:
    table = rows(folder / file)
    i, j = table[0].index(a), table[0].index(b)
    for r in table:
        r[i], r[j] = r[j], r[i]
    write_rows(folder / file, table)


def header_only(folder: Path, file: str) -> None:
    write_rows(folder / file, rows(folder / file)[:1])


def manifest_set(folder: Path, prop: str, value: str | None) -> None:
    """Set (or with ``None`` remove) a manifest property."""
    table = rows(folder / "manifest.csv")
    keep = [r for r in table if r[0] != prop]
    if value is not None:
        keep.append([prop, value])
    write_rows(folder / "manifest.csv", keep)


def make_zip(path: Path, entries: dict[str, bytes], *, infos: dict[str, dict] | None = None) -> Path:
    """Write a ZIP of ``entries``; ``infos`` sets ZipInfo attributes per name."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            for attr, value in (infos or {}).get(name, {}).items():
                setattr(info, attr, value)
            zf.writestr(info, data)
    return path


def zip_folder(folder: Path, path: Path, prefix: str = "") -> Path:
    return make_zip(path, {prefix + p.name: p.read_bytes() for p in sorted(folder.iterdir())})


def patch_central(path: Path, index: int, offset: int, fmt: str, value: int) -> None:
    """Overwrite a field of the ``index``-th central directory record (offset from its signature)."""
    data = bytearray(path.read_bytes())
    pos = -1
    for _ in range(index + 1):
        pos = data.index(b"PK\x01\x02", pos + 1)
    struct.pack_into(fmt, data, pos + offset, value)
    path.write_bytes(bytes(data))


def gradebook(folder: Path, **changes: dict[str, str]) -> None:
    """Add a valid OneRoster 1.2 gradebook to the 1.2 fixture in ``folder`` (one category, line
    item, result, score scale and learning objective), marked bulk in its manifest.

    ``changes`` maps a file stem to column values that replace the valid ones in its row.
    """
    files = {
        "categories": {"sourcedId": "cat-1", "title": "Homework", "weight": "1"},
        "lineItems": {"sourcedId": "li-1", "title": "Quiz 1", "assignDate": "2026-09-01", "dueDate": "2026-09-08",
                      "classSourcedId": "cls-bio-1", "categorySourcedId": "cat-1",
                      "academicSessionSourcedId": "as-2026-s1", "resultValueMin": "0", "resultValueMax": "100",
                      "schoolSourcedId": "org-hs"},
        "results": {"sourcedId": "res-1", "lineItemSourcedId": "li-1", "studentSourcedId": "usr-s1",
                    "scoreStatus": "fully graded", "score": "94", "scoreDate": "2026-09-09"},
        "scoreScales": {"sourcedId": "ss-1", "title": "Letters", "type": "letter", "orgSourcedId": "org-hs",
                        "courseSourcedId": "crs-bio", "classSourcedId": "cls-bio-1",
                        "scoreScaleValue": "{A:94},{B:85}"},
        "lineItemLearningObjectiveIds": {"sourcedId": "lo-1", "lineItemSourcedId": "li-1", "source": "case",
                                         "learningObjectiveId": "urn:uuid:6b3b2f1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"},
    }
    from rostergate.formats.schema.oneroster import HEADERS_12

    for stem, row in files.items():
        row = {**row, **changes.get(stem, {})}
        header = list(HEADERS_12[stem])
        write_rows(folder / f"{stem}.csv", [header, [row.get(c, "") for c in header]])
        manifest_set(folder, f"file.{stem}", "bulk")
