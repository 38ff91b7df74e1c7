"""Walk and remove trees that tenants made: iterative, symlink-safe, one descriptor at a time.

A tenant's home can hold any tree the server once allowed (1,100 nested folders
made before the depth limit existed, say). Python 3.11's ``Path.rglob`` and
``shutil.rmtree`` recurse once per level (``RecursionError``) and ``rmtree``
keeps a descriptor open per level; nothing here does either:

* an explicit stack of frames, one per folder on the way down, holding that
  folder's identity ``(st_dev, st_ino)`` and the sub-folders still to visit;
* exactly one open directory descriptor: a folder is entered with
  ``openat(parent, name, O_DIRECTORY | O_NOFOLLOW)`` and left with
  ``openat(folder, "..")``, whose identity must be the one remembered on the way
  down. A symlink is never followed (it is listed, or removed, as an entry), and
  a folder moved or swapped during the walk raises :class:`TreeChanged` rather
  than leading anywhere else.

Memory is bounded by the depth plus the names waiting in the open folders;
:func:`walk` also stops after ``max_entries`` entries (:class:`TooManyEntries`).
"""

from __future__ import annotations

import errno
import os
import stat as statmod
from collections.abc import Iterator
from dataclasses import dataclass, field

Root = str | bytes | os.PathLike[str] | os.PathLike[bytes]
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_A_FOLDER = (errno.ENOTDIR, errno.ELOOP)


class TooManyEntries(Exception):
    """The walk met more than ``limit`` entries; the ones before were yielded."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit} files and folders")
        self.limit = limit


class TreeChanged(OSError):
    """A folder was moved or replaced while it was being walked."""


@dataclass(frozen=True)
class Entry:
    """One entry below the root: its POSIX path relative to the root and its ``lstat``."""

    relative: str
    stat: os.stat_result

    @property
    def depth(self) -> int:
        return self.relative.count("/") + 1

    def is_dir(self) -> bool:
        return statmod.S_ISDIR(self.stat.st_mode)

    def is_file(self) -> bool:
        return statmod.S_ISREG(self.stat.st_mode)


@dataclass
class _Frame:
    identity: tuple[int, int]
    relative: str
    name: str  # in the parent folder ("" for the root)
    pending: list[tuple[str, tuple[int, int]]] | None = field(default=None)  # None: not listed yet


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _climb(fd: int, parent: tuple[int, int]) -> int:
    """Open ``..`` of the folder ``fd`` and check it is the folder we came from."""
    up = os.open("..", _DIR_FLAGS, dir_fd=fd)
    if _identity(os.fstat(up)) != parent:
        os.close(up)
        raise TreeChanged(errno.ESTALE, "a folder was moved while it was being walked")
    return up


def _swap(old: int, new: int) -> int:
    os.close(old)
    return new


def _enter(fd: int, name: str, identity: tuple[int, int]) -> int | None:
    """Open sub-folder ``name`` of ``fd`` if it is still the folder listed (None when gone)."""
    try:
        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in _NOT_A_FOLDER:  # replaced by a file or a symlink since it was listed
            return None
        raise
    if _identity(os.fstat(child)) != identity:
        os.close(child)
        return None
    return child


def walk(root: Root, max_entries: int | None = None,
         exclude: frozenset[str] | set[str] = frozenset()) -> Iterator[Entry]:
    """Every entry below ``root`` (folders before their contents), never following a symlink.

    ``exclude`` holds relative paths that are neither yielded nor entered. Raises
    :class:`TooManyEntries` once more than ``max_entries`` entries were met, and
    :class:`TreeChanged` when a folder moves under the walk.
    """
    fd = os.open(root, _DIR_FLAGS)
    try:
        stack = [_Frame(_identity(os.fstat(fd)), "", "")]
        count = 0
        while stack:  # each pass lists a folder, enters one, or climbs out of one
            frame = stack[-1]
            if frame.pending is None:
                with os.scandir(fd) as listing:
                    entries = sorted((e.name, e.stat(follow_symlinks=False)) for e in listing)
                frame.pending = []
                for name, info in entries:
                    relative = _join(frame.relative, name)
                    if relative in exclude:
                        continue
                    count += 1
                    if max_entries is not None and count > max_entries:
                        raise TooManyEntries(max_entries)
                    yield Entry(relative, info)
                    if statmod.S_ISDIR(info.st_mode):
                        frame.pending.append((name, _identity(info)))
                frame.pending.reverse()  # pop() then visits them in name order
            if frame.pending:
                name, identity = frame.pending.pop()
                child = _enter(fd, name, identity)
                if child is not None:
                    fd = _swap(fd, child)
                    stack.append(_Frame(identity, _join(frame.relative, name), name))
                continue
            stack.pop()
            if stack:
                fd = _swap(fd, _climb(fd, stack[-1].identity))
    finally:
        os.close(fd)


def walk_files(root: Root, max_entries: int | None = None,
               exclude: frozenset[str] | set[str] = frozenset()) -> Iterator[Entry]:
    """The regular files below ``root`` (see :func:`walk`; folders count towards ``max_entries``)."""
    return (entry for entry in walk(root, max_entries, exclude) if entry.is_file())


def tree_height(root: Root, max_entries: int) -> int:
    """How many levels lie below ``root`` (0 for an empty folder); bounded like :func:`walk`."""
    return max((entry.depth for entry in walk(root, max_entries)), default=0)


def removable_root(root: Root) -> str | bytes:
    """``root`` as :func:`remove_tree` acts on it: trailing slashes dropped, so that a symlink
    named ``link/`` is the link itself and not the folder it points to.

    Raises :class:`ValueError` for a path that names no entry of its own: empty
    (``Path("")`` is ``.``), ``/``, or ending in ``.`` or ``..``. Those would
    empty the current folder, its parent or the whole file system before the
    final ``rmdir`` failed.
    """
    path = os.fspath(root)
    slash, dots = (b"/", (b"", b".", b"..")) if isinstance(path, bytes) else ("/", ("", ".", ".."))
    stripped = path.rstrip(slash)  # type: ignore[arg-type]
    if os.path.basename(stripped) in dots:
        raise ValueError(f"remove_tree refuses {path!r}: name the folder to remove itself "
                         "(not '', '/', '.' or '..')")
    return stripped


def remove_tree(root: Root, attempts: int = 3) -> int:
    """Remove ``root`` and everything below it; returns how many entries went.

    A missing ``root`` is fine; a symlink or file at ``root`` is removed itself
    (never followed, even when written with a trailing slash). Nothing outside
    ``root`` is touched: sub-folders are entered by name without following links
    and left through ``..`` only after checking it is the folder they were
    entered from; the walk never climbs out of ``root``. ``root`` must name an
    entry (see :func:`removable_root`: ``.``, ``..``, ``/`` and empty paths raise
    :class:`ValueError`). Entries added while it runs are removed by a further
    pass (at most ``attempts`` passes).
    """
    root = removable_root(root)
    removed = 0
    for attempt in range(attempts):
        try:
            fd = os.open(root, _DIR_FLAGS)
        except FileNotFoundError:
            return removed
        except OSError as exc:
            if exc.errno not in _NOT_A_FOLDER:
                raise
            os.unlink(root)
            return removed + 1
        removed += _empty(fd)  # closes fd
        try:
            os.rmdir(root)
            return removed + 1
        except FileNotFoundError:
            return removed
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY or attempt == attempts - 1:
                raise
    return removed


def _empty(fd: int) -> int:
    """Remove everything inside the folder ``fd`` (which it closes); returns the count."""
    removed = 0
    try:
        stack = [_Frame(_identity(os.fstat(fd)), "", "")]
        while stack:  # each pass empties a folder's files, enters a sub-folder, or removes one
            frame = stack[-1]
            if frame.pending is None:
                frame.pending = []
                with os.scandir(fd) as listing:
                    entries = [(e.name, e.stat(follow_symlinks=False)) for e in listing]
                for name, info in entries:
                    if statmod.S_ISDIR(info.st_mode):
                        frame.pending.append((name, _identity(info)))
                        continue
                    try:
                        os.unlink(name, dir_fd=fd)
                        removed += 1
                    except FileNotFoundError:
                        pass
            if frame.pending:
                name, identity = frame.pending.pop()
                child = _enter(fd, name, identity)
                if child is not None:
                    fd = _swap(fd, child)
                    stack.append(_Frame(identity, "", name))
                continue
            stack.pop()
            if not stack:
                break
            fd = _swap(fd, _climb(fd, stack[-1].identity))
            try:
                if _identity(os.stat(frame.name, dir_fd=fd, follow_symlinks=False)) != frame.identity:
                    raise TreeChanged(errno.ESTALE, "a folder was replaced while it was being removed")
                os.rmdir(frame.name, dir_fd=fd)
                removed += 1
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)
    return removed
