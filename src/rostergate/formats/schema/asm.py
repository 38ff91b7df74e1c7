"""Apple School Manager's six CSV files as data (asm.md §1).

The one copy of the format's vocabulary: file names and template headers (§1.2–§1.7), key
columns, the extra numbered columns and their limits, required values, identifier and name
rules, password policies, references between files (§1.8) and the CSV dialect (§1.1).
The ASM validator interprets these tables; the converter writes them; nothing restates them.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

# asm.md §1.2–§1.7: the template header row of each file, in template order (also the file order)
HEADERS: Final[dict[str, tuple[str, ...]]] = {
    "students": ("person_id", "person_number", "first_name", "middle_name", "last_name", "grade_level",
                 "email_address", "sis_username", "password_policy", "location_id"),
    "staff": ("person_id", "person_number", "first_name", "middle_name", "last_name", "email_address",
              "sis_username", "location_id"),
    "courses": ("course_id", "course_number", "course_name", "location_id"),
    "classes": ("class_id", "class_number", "course_id", "instructor_id", "instructor_id_2", "instructor_id_3",
                "location_id"),
    "rosters": ("roster_id", "class_id", "student_id"),
    "locations": ("location_id", "location_name"),
}
#: The six file names, in template order (asm.md §1.1: all six, every time).
FILES: Final[tuple[str, ...]] = tuple(f"{stem}.csv" for stem in HEADERS)

#: The key column of each file: unique within the file (``person_id`` across students and staff).
KEYS: Final[dict[str, str]] = {
    "students": "person_id", "staff": "person_id", "courses": "course_id", "classes": "class_id",
    "rosters": "roster_id", "locations": "location_id",
}

#: Columns whose value may not be empty.
REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "students": ("person_id", "first_name", "last_name", "location_id"),
    "staff": ("person_id", "first_name", "last_name", "location_id"),
    "courses": ("course_id", "location_id"),
    "classes": ("class_id", "course_id", "location_id"),
    "rosters": ("roster_id", "class_id", "student_id"),
    "locations": ("location_id", "location_name"),
}

# asm.md §1.2, §1.3, §1.5: extra numbered columns after the template's
MAX_LOCATIONS: Final = 999  # location_id + location_id_2 … location_id_999
MAX_INSTRUCTORS: Final = 15  # instructor_id + instructor_id_2 … instructor_id_15
LOCATION_N: Final = re.compile(r"location_id_(\d+)")
INSTRUCTOR_N: Final = re.compile(r"instructor_id_(\d+)")


class Numbered(NamedTuple):
    """A file's extra numbered columns: ``pattern`` with N from 2 to ``most``."""

    pattern: re.Pattern[str]
    most: int

    @property
    def limit(self) -> str:
        """How the limit reads in a report: ``location_id_2 … location_id_999``."""
        base = self.pattern.pattern.split("_(", 1)[0]
        return f"{base}_2 … {base}_{self.most}"


NUMBERED: Final[dict[str, Numbered]] = {
    "students": Numbered(LOCATION_N, MAX_LOCATIONS),
    "staff": Numbered(LOCATION_N, MAX_LOCATIONS),
    "classes": Numbered(INSTRUCTOR_N, MAX_INSTRUCTORS),
}
#: Optional named columns Apple accepts after the template's (asm.md §1.5, Q6).
OPTIONAL: Final[dict[str, tuple[str, ...]]] = {"classes": ("class_display_name",)}

# asm.md §1.1 "alphanumeric and can include a hyphen"; '_' and '.' seen in the wild (§7 Q4)
ID_OK: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"
ID_TOLERATED: Final = r"[A-Za-z0-9._-]+"
ID_MAX: Final = 256  # asm.md §1.2 notes (RosterPerson/RosterClass identifier limits, A24)
NAME_MAX: Final = 1024
NAME_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "students": ("first_name", "middle_name", "last_name"), "staff": ("first_name", "middle_name", "last_name"),
    "courses": ("course_name",), "locations": ("location_name",), "classes": ("class_display_name",),
}
#: asm.md §1.2 students.password_policy: exactly 4, 6, 8, or empty (the location's default).
PASSWORD_POLICIES: Final[tuple[str, ...]] = ("4", "6", "8", "")

# asm.md §1.8: (file, column or extra-column name, target file, target column)
REFERENCES: Final[tuple[tuple[str, str, str, str], ...]] = (
    ("students", "location_id", "locations", "location_id"),
    ("students", "location_id_N", "locations", "location_id"),
    ("staff", "location_id", "locations", "location_id"),
    ("staff", "location_id_N", "locations", "location_id"),
    ("courses", "location_id", "locations", "location_id"),
    ("classes", "course_id", "courses", "course_id"),
    ("classes", "instructor_id", "staff", "person_id"),
    ("classes", "instructor_id_N", "staff", "person_id"),
    ("classes", "location_id", "locations", "location_id"),
    ("rosters", "class_id", "classes", "class_id"),
    ("rosters", "student_id", "students", "person_id"),
)

#: Every column that holds an id or a reference to one (keys and reference columns; plus
#: their numbered copies, see :func:`is_id_column`).
ID_COLUMNS: Final[frozenset[str]] = frozenset(KEYS.values()) | frozenset(
    col for _, col, _, _ in REFERENCES if not col.endswith("_N"))

# asm.md §1.1: the CSV dialect
DELIMITERS: Final[tuple[str, ...]] = (",", ";")
#: Apple escapes quotes and line breaks in values with a backslash.
ESCAPE: Final = "\\"


def is_id_column(name: str) -> bool:
    """Whether ``name`` holds ids: a key or reference column, or a numbered location/instructor one."""
    return name in ID_COLUMNS or bool(LOCATION_N.fullmatch(name) or INSTRUCTOR_N.fullmatch(name))


def id_columns(stem: str, columns: list[str]) -> list[str]:
    """Identifier columns of a file, in file order: its key, references and numbered columns."""
    ids = {KEYS[stem]} | {col for f, col, _, _ in REFERENCES if f == stem and not col.endswith("_N")}
    ids |= {c for c in columns if LOCATION_N.fullmatch(c) or INSTRUCTOR_N.fullmatch(c)}
    return [c for c in columns if c in ids]
