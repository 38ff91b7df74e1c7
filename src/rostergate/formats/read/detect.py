"""Recognising what an unpacked upload is, and which OneRoster version: the one place that guesses.

:func:`detect_format` gives ``"oneroster-1.1"``/``"oneroster-1.2"`` when a manifest.csv
is present, ``"asm"`` when Apple's own file names (students/staff/rosters/locations.csv,
asm.md §1.1) or key columns are present, and, without a manifest, OneRoster when a CSV
header starts with ``sourcedId`` (so that the report can say "manifest.csv is missing"
rather than "unknown format"). ``None`` otherwise.

A OneRoster version is the manifest's ``oneroster.version`` when it names a supported
version (oneroster.md §4), else :func:`guess_version` from the files: roles.csv or
userProfiles.csv, or a users.csv header of 1.2 (``primaryOrgSourcedId`` without
``orgSourcedIds``), mean 1.2. The validator, the converter and detection all ask here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from rostergate.formats.read.csvio import load_table, read_header
from rostergate.formats.read.sources import find_file, match_name
from rostergate.formats.schema import asm
from rostergate.formats.schema import oneroster as S

#: Files only Apple's format has (courses.csv and classes.csv are OneRoster names too).
ASM_ONLY_FILES = frozenset(asm.FILES) - {f"{stem}.csv".casefold() for v in S.VERSIONS for stem in S.HEADERS[v]}
#: Header columns that only ASM files have: the key columns.
ASM_HEADER_HINTS = frozenset(asm.KEYS.values())
#: Files whose presence means OneRoster 1.2 (with no manifest to say so).
_FILES_OF_1_2 = ("roles.csv", "userProfiles.csv")

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
        return f"oneroster-{guess_version(find)}"
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


def guess_version(find: Finder) -> str:
    """The OneRoster version the files themselves suggest, without a manifest."""
    if any(find(name) is not None for name in _FILES_OF_1_2):
        return "1.2"
    users = find("users.csv")
    if users is not None:
        header = read_header(users)
        if "orgSourcedIds" not in header and "primaryOrgSourcedId" in header:
            return "1.2"
    return "1.1"


def _version(find: Finder) -> str:
    manifest = find(S.MANIFEST)
    return (_manifest_version(manifest) if manifest is not None else None) or guess_version(find)


def _manifest_version(path: Path) -> str | None:
    """The version the manifest's ``oneroster.version`` row names, if supported (§4; never raises)."""
    try:
        loaded = load_table(path, S.MANIFEST)
    except OSError:
        return None
    if loaded.frame is None or loaded.frame.shape[1] < 2:
        return None
    rows = [loaded.header[:2], *loaded.frame.iloc[:, :2].to_numpy(dtype=object).tolist()]
    for name, value in rows:
        version = S.VERSION_NAMES.get(str(value).strip()) if str(name).strip() == "oneroster.version" else None
        if version is not None:
            return version
    return None
