"""Finding an upload's files by name: exactly, else ignoring case; at the top, else in its one folder.

SIS exports and hand-made ZIPs spell file names as they like (``Users.csv``) and
sometimes wrap them in one folder. :func:`match_name` is the one rule for "this
name, ignoring case" (validators report the difference; the converter just reads the
file); :func:`find_file` applies it to a folder and, failing that, to its only
subfolder.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def match_name(names: Iterable[str], wanted: str) -> str | None:
    """``wanted`` if it is among ``names``, else the first of ``names`` (sorted) equal to it ignoring case."""
    names = sorted(names)
    if wanted in names:
        return wanted
    folded = wanted.casefold()
    return next((name for name in names if name.casefold() == folded), None)


def find_file(folder: Path, name: str) -> Path | None:
    """The file ``name`` (see :func:`match_name`) in ``folder``, else in its only subfolder.

    Hidden folders and ``__MACOSX`` do not count as subfolders; ``None`` when no such file.
    """
    candidates = [folder]
    subdirs = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(("__MACOSX", "."))] \
        if folder.is_dir() else []
    if len(subdirs) == 1:
        candidates.append(subdirs[0])
    for where in candidates:
        if not where.is_dir():
            continue
        files = {path.name: path for path in where.iterdir() if path.is_file()}
        actual = match_name(files, name)
        if actual is not None:
            return files[actual]
    return None
