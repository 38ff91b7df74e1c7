"""Recognising what an unpacked upload is, and which OneRoster version: the one place that guesses.

:func:`detect_format` gives ``"oneroster-1.1"``/``"oneroster-1.2"`` when a manifest.csv
is present, ``"asm"`` when Apple's own file names (students/staff/rosters/locations.csv,
asm.md §1.1) or key columns are present, and, without a manifest, OneRoster when a CSV
header starts with ``sourcedId`` (so that the report can say "manifest.csv is missing"
rather than "unknown format"). ``None`` otherwise.

A OneRoster version is the manifest's ``oneroster.version`` when it names a supported
version (oneroster.md §4), else :func:`guess_version` from what the upload holds: a file
only 1.2 has (roles.csv, userProfiles.csv, the 1.2 gradebook files), a manifest property
only 1.2 has (``file.roles`` …), or a users.csv header of 1.2 (1.2-only columns such as
``primaryOrgSourcedId`` without ``orgSourcedIds``) mean 1.2. The guess says why, so that a
report can too. The validator, the converter and detection all ask here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rostergate.formats.read.csvio import load_table, read_header
from rostergate.formats.read.sources import find_file, match_name
from rostergate.formats.schema import asm
from rostergate.formats.schema import oneroster as S

#: Files only Apple's format has (courses.csv and classes.csv are OneRoster names too).
ASM_ONLY_FILES = frozenset(asm.FILES) - {f"{stem}.csv".casefold() for v in S.VERSIONS for stem in S.HEADERS[v]}
#: Header columns that only ASM files have: the key columns.
ASM_HEADER_HINTS = frozenset(asm.KEYS.values())
#: Files (stems) only OneRoster 1.2 has: their presence, or their file.* key in a manifest, means 1.2.
#: (The rostering files first: the reason a report gives is the most telling one.)
STEMS_OF_1_2 = ("roles", "userProfiles", *sorted(set(S.HEADERS["1.2"]) - set(S.HEADERS["1.1"])
                                                 - {"roles", "userProfiles"}))
#: users.csv columns only 1.2 has (1.1 keeps orgSourcedIds and role there, oneroster.md §9), the
#: one that replaces orgSourcedIds first.
_USER_COLUMNS_OF_1_2 = ("primaryOrgSourcedId", *(c for c in S.HEADERS["1.2"]["users"]
                                                 if c not in S.HEADERS["1.1"]["users"] and c != "primaryOrgSourcedId"))


@dataclass(frozen=True)
class Guess:
    """A OneRoster version read from the files, and why (for the report)."""

    version: str
    why: str

#: Finds a file of the upload by name, ignoring case (``None``: not there).
Finder = Callable[[str], Path | None]


def detect_format(folder: Path) -> str | None:
    """Return ``"asm"``, ``"oneroster-1.1"``, ``"oneroster-1.2"`` or ``None``. Never raises."""
    try:
        files = {p.name: p for p in Path(folder).iterdir() if p.is_file()}
    except OSError:
        return None
    find = finder(files)
    if find(S.MANIFEST) is not None:
        return f"oneroster-{_version(find)}"
    if any(match_name(files, name) for name in ASM_ONLY_FILES):
        return "asm"
    headers = [read_header(p) for name, p in files.items() if name.casefold().endswith(".csv")]
    if any(ASM_HEADER_HINTS & set(h) for h in headers):
        return "asm"
    if any(h[:1] == ["sourcedId"] for h in headers):
        return f"oneroster-{guess_version(find).version}"
    return None


def oneroster_version(folder: Path) -> str:
    """The OneRoster version (``"1.1"`` or ``"1.2"``) of the upload in ``folder`` or its only subfolder."""
    return _version(lambda name: find_file(folder, name))


def finder(files: Mapping[str, Path]) -> Finder:
    """A :data:`Finder` over ``files`` (name → path), by :func:`~rostergate.formats.read.sources.match_name`."""
    def find(name: str) -> Path | None:
        actual = match_name(files, name)
        return None if actual is None else files[actual]
    return find


def guess_version(find: Finder, manifest_keys: Iterable[str] = ()) -> Guess:
    """The OneRoster version the upload itself suggests, without a ``oneroster.version`` to say it.

    ``manifest_keys`` are the property names of the manifest, if there is one.
    """
    for stem in STEMS_OF_1_2:
        if find(f"{stem}.csv") is not None:
            return Guess("1.2", f"{stem}.csv is a OneRoster 1.2 file")
    keys = set(manifest_keys)
    for stem in STEMS_OF_1_2:
        if f"file.{stem}" in keys:
            return Guess("1.2", f"manifest.csv names file.{stem}, a OneRoster 1.2 file")
    users = find("users.csv")
    if users is not None:
        header = read_header(users)
        only_12 = [c for c in _USER_COLUMNS_OF_1_2 if c in header]
        if "orgSourcedIds" not in header and only_12:
            return Guess("1.2", f"users.csv has the OneRoster 1.2 column {only_12[0]}")
    return Guess("1.1", "no file, manifest property or users.csv column of OneRoster 1.2")


def _version(find: Finder) -> str:
    manifest = find(S.MANIFEST)
    if manifest is None:
        return guess_version(find).version
    declared, keys = _manifest_version(manifest)
    return declared or guess_version(find, keys).version


def _manifest_version(path: Path) -> tuple[str | None, list[str]]:
    """The version the manifest's ``oneroster.version`` row names, if supported (§4), and the
    manifest's property names (never raises)."""
    try:
        loaded = load_table(path, S.MANIFEST)
    except OSError:
        return None, []
    if loaded.frame is None or loaded.frame.shape[1] < 2:
        return None, []
    rows = [loaded.header[:2], *loaded.frame.iloc[:, :2].to_numpy(dtype=object).tolist()]
    keys = [str(name).strip() for name, _ in rows]
    for name, value in rows:
        version = S.VERSION_NAMES.get(str(value).strip()) if str(name).strip() == "oneroster.version" else None
        if version is not None:
            return version, keys
    return None, keys
