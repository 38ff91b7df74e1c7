"""Unpacking uploaded ZIPs safely, with hard bounds before any expansion.

:func:`unpack` is the only way an upload's ZIP reaches the disk. It reads the
archive with its own small parser (never :mod:`zipfile`), in this order:

1. **End record and central directory**, bounded: at most ``max_entries``
   entries and ``max_directory_size`` bytes of directory are ever read, and the
   entry count must use up the directory exactly (no entries hidden from one
   reader and seen by another).
2. **Every entry checked before one byte is decompressed**: names (no ``..``,
   absolute paths, drive letters, backslashes or NULs; no duplicates or names
   differing only by case), no encrypted or non-regular entries, and only
   ``stored`` and ``deflate`` compression (bzip2, LZMA and the rest expand in
   blocks we cannot bound, so they are refused from the directory alone). The
   local headers must agree with the directory (name, method) and no two
   entries may share bytes (overlapping entries are the trick behind
   non-recursive zip bombs).
3. **A bounded stream per entry**: the raw compressed bytes are fed in small
   chunks to ``zlib.decompressobj`` with an output bound per step
   (:data:`OUTPUT_STEP`), the CRC is computed as it goes, and the entry stops at
   whichever comes first: more output than its declared size, the per-entry
   limit, the total limit, or the ratio limit judged against the compressed
   bytes consumed *so far* (after ``ratio_grace`` bytes of output). Memory is
   therefore a few MiB whatever the archive claims, and a deflate bomb is
   stopped after about ``ratio_grace + OUTPUT_STEP`` bytes of output.

Nothing is written outside ``dest``; on any error ``dest`` is left empty.
``__MACOSX/``, ``._*`` and ``.DS_Store`` are ignored; files inside exactly one
top-level folder are accepted with a warning and flattened (ASM forbids
folders, asm.md §2.3; oneroster.md §2 G12), deeper nesting is an error.

:func:`zip_state` tells an intake whether an upload is finished, from the end
record and the central directory only: it never decompresses anything (it runs
inside the SFTP server's process).
"""

from __future__ import annotations

import enum
import errno
import re
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from rostergate.formats.catalogue import issue
from rostergate.formats.issues import Issue

STORED, DEFLATED = 0, 8
_ACCEPTED_METHODS = {STORED, DEFLATED}
_METHOD_NAMES = {1: "shrink", 6: "implode", 9: "deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard",
                 95: "XZ", 98: "PPMd", 99: "AES encryption"}
#: compressed bytes read from the upload per step
INPUT_CHUNK = 64 * 1024
#: no single decompression step produces more than this many bytes
OUTPUT_STEP = 1 << 20

_LOCAL_SIG, _CENTRAL_SIG, _EOCD_SIG = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"
_EOCD64_SIG, _LOCATOR_SIG = b"PK\x06\x06", b"PK\x06\x07"
# signature, disk, directory disk, entries on this disk, entries, directory size, directory offset, comment length
_EOCD = struct.Struct("<4s4H2LH")
# signature, disk holding the ZIP64 end record, its offset, number of disks
_LOCATOR = struct.Struct("<4sLQL")
# signature, record size, made by, needed, disk, directory disk, entries on disk, entries, dir size, dir offset
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
# signature, made by, needed, flags, method, time, date, crc, compressed size, size,
# name length, extra length, comment length, disk, internal attributes, external attributes, local header offset
_CENTRAL = struct.Struct("<4s6H3L5HLL")
# signature, needed, flags, method, time, date, crc, compressed size, size, name length, extra length
_LOCAL = struct.Struct("<4s5H3L2H")
_MAX_COMMENT = 0xFFFF
_DRIVE = re.compile(r"^[A-Za-z]:")
#: errors opening a target that come from the entry's name, not from the disk
_NAME_ERRORS = {errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ, errno.EISDIR, errno.EEXIST}


@dataclass(frozen=True)
class ArchiveLimits:
    """Zip-bomb limits, enforced on the bytes actually decompressed, never on what headers claim."""

    max_entries: int = 1_000
    #: bytes one entry may unpack to
    max_entry_size: int = 2 * 1024**3
    #: bytes all entries together may unpack to
    max_total_size: int = 4 * 1024**3
    #: output bytes per compressed byte consumed so far
    max_ratio: float = 200.0
    #: the ratio is judged only once an entry has produced this much
    ratio_grace: int = 1 << 20
    #: bytes of central directory that are ever read
    max_directory_size: int = 4 << 20


class ZipState(enum.Enum):
    """What an upload is, judged from its end record and central directory alone."""

    #: a finished ZIP: end record and directory read, every local header inside the file
    COMPLETE = "complete"
    #: starts like a ZIP but has no end record yet (being uploaded; keep it for a resume)
    INCOMPLETE = "incomplete"
    #: finished but not a readable ZIP (no ZIP signature, or a damaged end record or directory)
    NOT_ZIP = "not_zip"


@dataclass(frozen=True)
class Entry:
    """One central directory record, sizes and offset already taken from ZIP64 fields."""

    filename: str
    raw_name: bytes
    flag_bits: int
    compress_type: int
    crc: int
    compress_size: int
    file_size: int
    header_offset: int
    external_attr: int

    def is_dir(self) -> bool:
        return self.filename.endswith("/")


@dataclass(frozen=True)
class _End:
    entries: int
    directory_size: int
    directory_offset: int


class _Corrupt(Exception):
    """The end record or central directory cannot be read; the message says why."""


class _TooMany(Exception):
    """The end record counts more entries than the limit (the directory is not read)."""


# -- end record and central directory -------------------------------------------------
def _find_end(fh: BinaryIO, size: int) -> _End | None:
    """The end record whose directory is where it says; ``None`` when there is none at all.

    Raises :class:`_Corrupt` when an end record closes the file but does not fit.
    """
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    fh.seek(tail_start)
    tail = fh.read(size - tail_start)
    closes_file = False
    pos = len(tail)
    while (pos := tail.rfind(_EOCD_SIG, 0, pos)) >= 0:
        if pos + _EOCD.size > len(tail):
            continue
        _, disk, dir_disk, _, entries, dir_size, dir_offset, comment = _EOCD.unpack_from(tail, pos)
        at = tail_start + pos
        closes_file = closes_file or at + _EOCD.size + comment == size
        directory_end = at
        if at >= _LOCATOR.size:
            fh.seek(at - _LOCATOR.size)
            sig, disk64, offset64, disks = _LOCATOR.unpack(fh.read(_LOCATOR.size))
            if sig == _LOCATOR_SIG:
                if disk64 != 0 or disks > 1 or offset64 + _EOCD64.size > at - _LOCATOR.size:
                    continue
                fh.seek(offset64)
                record = fh.read(_EOCD64.size)
                sig, _, _, _, disk, dir_disk, _, entries, dir_size, dir_offset = _EOCD64.unpack(record)
                if sig != _EOCD64_SIG:
                    continue
                directory_end = offset64
        if disk == 0 and dir_disk == 0 and dir_offset + dir_size == directory_end:
            return _End(entries, dir_size, dir_offset)
    if closes_file:
        raise _Corrupt("its end record does not match its central directory")
    return None


def _read_directory(fh: BinaryIO, end: _End, limits: ArchiveLimits) -> list[Entry]:
    """Parse the central directory (bounded by the limits); raises :class:`_Corrupt` or :class:`_TooMany`."""
    if end.entries > limits.max_entries:
        raise _TooMany()
    if end.directory_size > limits.max_directory_size:
        raise _Corrupt(f"its central directory of {end.directory_size} bytes is larger than the limit of "
                       f"{limits.max_directory_size} bytes")
    fh.seek(end.directory_offset)
    data = fh.read(end.directory_size)
    if len(data) != end.directory_size:
        raise _Corrupt("its central directory is cut short")
    entries: list[Entry] = []
    pos = 0
    for number in range(1, end.entries + 1):
        if pos + _CENTRAL.size > len(data):
            raise _Corrupt("its central directory holds fewer entries than its end record counts")
        (sig, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len, _, _,
         external, offset) = _CENTRAL.unpack_from(data, pos)
        if sig != _CENTRAL_SIG:
            raise _Corrupt(f"entry {number} of its central directory is damaged")
        start = pos + _CENTRAL.size
        pos = start + name_len + extra_len + comment_len
        if pos > len(data):
            raise _Corrupt(f"entry {number} of its central directory is cut short")
        raw_name = data[start:start + name_len]
        usize, csize, offset = _zip64_fields(data[start + name_len:start + name_len + extra_len], usize, csize, offset)
        if offset + _LOCAL.size > end.directory_offset:
            raise _Corrupt(f"entry {number} starts beyond the archive's data")
        try:
            name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        except UnicodeDecodeError:
            raise _Corrupt(f"the name of entry {number} is not valid UTF-8") from None
        entries.append(Entry(name, raw_name, flags, method, crc, csize, usize, offset, external))
    if pos != len(data):
        raise _Corrupt("its central directory holds more entries than its end record counts")
    return entries


def _zip64_fields(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Sizes and offset from the ZIP64 extra field, for those the record marks with all-ones."""
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + length]
        if len(body) != length:
            raise _Corrupt("an entry's extra field is damaged")
        if kind == 0x0001:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            wanted = [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, offset == 0xFFFFFFFF]
            if sum(wanted) > len(values):
                raise _Corrupt("an entry's ZIP64 field is damaged")
            found = iter(values)
            usize = next(found) if wanted[0] else usize
            csize = next(found) if wanted[1] else csize
            offset = next(found) if wanted[2] else offset
        pos += 4 + length
    return usize, csize, offset


def zip_state(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> ZipState:
    """Whether ``path`` is a finished ZIP, a ZIP still being uploaded, or finished and not a ZIP.

    Reads the end record and the central directory only (at most about
    ``max_directory_size`` + 64 KiB), never decompresses. An archive with more
    entries than ``max_entries`` is complete without its directory being read
    (:func:`unpack` refuses it). A file shorter than 4 bytes, or one that starts
    with a ZIP local header and has no end record, is ``INCOMPLETE``. Never raises.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4:
                return ZipState.INCOMPLETE
            size = fh.seek(0, 2)
            end = _find_end(fh, size)
            if end is None:
                return ZipState.INCOMPLETE if head == _LOCAL_SIG else ZipState.NOT_ZIP
            _read_directory(fh, end, limits)
    except _TooMany:
        return ZipState.COMPLETE
    except (_Corrupt, struct.error):
        return ZipState.NOT_ZIP
    except OSError:  # gone or unreadable: nothing to take yet
        return ZipState.INCOMPLETE
    return ZipState.COMPLETE


def is_complete_zip(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> bool:
    """``zip_state(path) is ZipState.COMPLETE`` (see :func:`zip_state`)."""
    return zip_state(path, limits) is ZipState.COMPLETE


# -- unpacking --------------------------------------------------------------------------
def unpack(zip_path: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()) -> list[Issue]:
    """Extract ``zip_path`` into the existing empty folder ``dest``.

    Returns the issues found. If any has severity ``error`` the caller must
    stop; in that case ``dest`` is left empty (nothing is ever written outside
    it). Never raises for bad archive content; an error writing into ``dest``
    (a full disk) is raised after ``dest`` is emptied, because it is not the
    upload's fault.
    """
    try:
        fh = open(zip_path, "rb")  # noqa: SIM115 - closed by the caller's with-block below
    except OSError as exc:
        return [issue("archive.not_a_zip", reason=_reason(exc))]
    with fh:
        try:
            size = fh.seek(0, 2)
            end = _find_end(fh, size)
            if end is None:
                raise _Corrupt("it has no ZIP end record: it is not a ZIP file, or its upload was cut short")
            entries = _read_directory(fh, end, limits)
        except _TooMany:
            return [issue("archive.too_many_entries", limit=limits.max_entries)]
        except (_Corrupt, OSError, struct.error) as exc:
            return [issue("archive.not_a_zip", reason=_reason(exc))]
        issues: list[Issue] = []
        kept = _check_names(entries, issues)
        targets = _plan_layout(kept, issues)
        if any(i.severity == "error" for i in issues):
            return issues
        try:
            located = _locate(fh, entries, end.directory_offset)
        except OSError as exc:
            return [issue("archive.not_a_zip", reason=_reason(exc))]
        if isinstance(located, Issue):
            return issues + [located]
        if not targets:
            return issues + [issue("archive.empty")]
        written: list[Path] = []
        try:
            if not _extract(fh, located, targets, Path(dest), limits, issues, written):
                _remove(written)
        except BaseException:
            _remove(written)
            raise
    return issues


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _check_names(entries: list[Entry], issues: list[Issue]) -> list[Entry]:
    """Name, entry-type and compression checks; returns the entries worth extracting."""
    kept: list[Entry] = []
    exact: set[str] = set()
    folded: dict[str, str] = {}
    for info in entries:
        name = info.filename
        if "\\" in name:
            issues.append(issue("archive.backslash_path", value=name))
            continue
        if name.startswith("/") or _DRIVE.match(name):
            issues.append(issue("archive.absolute_path", value=name))
            continue
        if "\0" in name:
            issues.append(issue("archive.unsupported_entry", value=name, reason="its name holds a NUL character"))
            continue
        parts = PurePosixPath(name).parts
        if ".." in parts:
            issues.append(issue("archive.path_traversal", value=name))
            continue
        if name in exact:
            issues.append(issue("archive.duplicate_name", value=name))
            continue
        exact.add(name)
        if name.casefold() in folded:
            issues.append(issue("archive.case_collision", value=name, other=folded[name.casefold()]))
            continue
        folded[name.casefold()] = name
        if info.is_dir() or _ignored(parts):
            continue
        if info.flag_bits & 0x1:
            issues.append(issue("archive.encrypted", value=name))
            continue
        mode = (info.external_attr >> 16) & 0o170000
        if mode not in (0, 0o100000):
            issues.append(issue("archive.unsupported_entry", value=name, reason="not a regular file"))
            continue
        if info.compress_type not in _ACCEPTED_METHODS:
            method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
            issues.append(issue("archive.unsupported_compression", value=name, method=method))
            continue
        if name.lower().endswith(".zip"):
            issues.append(issue("archive.nested_zip", value=name))
            continue
        kept.append(info)
    return kept


def _ignored(parts: tuple[str, ...]) -> bool:
    return (
        not parts
        or parts[0] == "__MACOSX"
        or parts[-1] == ".DS_Store"
        or parts[-1].startswith("._")
        or parts[-1] in {"Thumbs.db", "desktop.ini"}
    )


def _locate(fh: BinaryIO, entries: list[Entry], data_end: int) -> dict[int, int] | Issue:
    """Where each entry's data starts (by header offset), from its local header.

    The local header must agree with the directory, and entries must occupy
    disjoint byte ranges before the directory.
    """
    spans: list[tuple[int, int, str]] = []
    starts: dict[int, int] = {}
    disagrees: Entry | None = None
    for info in entries:
        fh.seek(info.header_offset)
        head = fh.read(_LOCAL.size)
        if len(head) < _LOCAL.size:
            return issue("archive.overlapping_entries", value=info.filename, reason="header beyond the end")
        sig, _, _, method, _, _, _, _, _, name_len, extra_len = _LOCAL.unpack(head)
        if sig != _LOCAL_SIG:
            return issue("archive.overlapping_entries", value=info.filename, reason="no local header")
        if disagrees is None and (method != info.compress_type or fh.read(name_len) != info.raw_name):
            disagrees = info
        start = info.header_offset + _LOCAL.size + name_len + extra_len
        end = start + info.compress_size
        if end > data_end:
            return issue("archive.overlapping_entries", value=info.filename, reason="data beyond the end")
        spans.append((info.header_offset, end, info.filename))
        starts[info.header_offset] = start
    spans.sort()
    for (_, prev_end, prev_name), (begin, _, name) in zip(spans, spans[1:]):
        if begin < prev_end:
            return issue("archive.overlapping_entries", value=name, reason=f"shares bytes with '{prev_name}'")
    if disagrees is not None:
        return issue("archive.unsupported_entry", value=disagrees.filename,
                     reason="its local header disagrees with the central directory")
    return starts


def _plan_layout(kept: list[Entry], issues: list[Issue]) -> list[tuple[Entry, str]]:
    """Map entries to flat target names; at most one enclosing folder is tolerated."""
    parts = {info.filename: PurePosixPath(info.filename).parts for info in kept}
    folders = {p[0] for p in parts.values() if len(p) > 1}
    at_root = [info for info in kept if len(parts[info.filename]) == 1]
    strip = 0
    if len(folders) == 1 and not at_root:
        strip = 1
        issues.append(issue("archive.nested_folder", value=next(iter(folders))))
    targets: list[tuple[Entry, str]] = []
    for info in kept:
        rest = parts[info.filename][strip:]
        if len(rest) != 1:
            issues.append(issue("archive.too_deep", value=info.filename))
            continue
        targets.append((info, rest[0]))
    names = [t for _, t in targets]
    if len(set(n.casefold() for n in names)) != len(names):
        issues.append(issue("archive.case_collision", value=", ".join(sorted(names)), other="each other"))
    return targets


def _extract(
    fh: BinaryIO,
    starts: dict[int, int],
    targets: list[tuple[Entry, str]],
    dest: Path,
    limits: ArchiveLimits,
    issues: list[Issue],
    written: list[Path],
) -> bool:
    """Stream entries to ``dest``; ``False`` (with an issue) as soon as a limit or check fails."""
    dest = dest.resolve()
    total = 0
    for info, target_name in targets:
        target = (dest / target_name).resolve()
        if target.parent != dest:
            issues.append(issue("archive.path_traversal", value=info.filename))
            return False
        try:
            out = open(target, "xb")  # noqa: SIM115 - closed (or removed) by the stream loop
        except OSError as exc:
            if exc.errno not in _NAME_ERRORS:
                raise
            issues.append(issue("archive.unsupported_entry", value=info.filename, reason=_reason(exc)))
            return False
        with out:
            written.append(target)
            stopped = _copy_entry(fh, info, starts[info.header_offset], out, limits, total)
        if isinstance(stopped, Issue):
            issues.append(stopped)
            return False
        total += stopped
    return True


def _copy_entry(fh: BinaryIO, info: Entry, start: int, out: BinaryIO, limits: ArchiveLimits,
                total_before: int) -> int | Issue:
    """Decompress one entry into ``out`` through a bounded stream; its size, or the issue that stopped it.

    Every step reads at most :data:`INPUT_CHUNK` compressed bytes and produces at
    most :data:`OUTPUT_STEP` bytes, and every byte produced is counted against the
    declared size and the limits *before* it is written.
    """
    name = info.filename
    inflater = zlib.decompressobj(-15) if info.compress_type == DEFLATED else None
    left = info.compress_size  # compressed bytes not read yet
    fed = produced = crc = 0
    pending = b""  # compressed bytes read but not consumed yet
    fh.seek(start)
    while True:
        if not pending and left:
            read = fh.read(min(INPUT_CHUNK, left))
            if not read:
                return issue("archive.size_mismatch", value=name)
            left -= len(read)
            fed += len(read)
            pending = read
        waiting = len(pending)
        if inflater is None:
            data, pending = pending, b""
        else:
            try:
                data = inflater.decompress(pending, OUTPUT_STEP)
            except zlib.error as exc:
                return issue("archive.unsupported_entry", value=name, reason=f"damaged data: {_reason(exc)}")
            pending = inflater.unconsumed_tail
        if data:
            produced += len(data)
            if produced > info.file_size:
                return issue("archive.size_mismatch", value=name)
            if produced > limits.max_entry_size:
                return issue("archive.entry_too_large", value=name, limit=limits.max_entry_size)
            if total_before + produced > limits.max_total_size:
                return issue("archive.too_large", limit=limits.max_total_size)
            consumed = fed - len(pending)
            if produced > limits.ratio_grace and produced > limits.max_ratio * max(consumed, 1):
                return issue("archive.compression_ratio", value=name, limit=int(limits.max_ratio))
            crc = zlib.crc32(data, crc)
            out.write(data)
        if inflater is None:
            if not left:
                break
        elif inflater.eof:
            break
        elif not data and len(pending) == waiting and (pending or not left):
            # no progress: the deflate stream stops short of its end
            return issue("archive.size_mismatch", value=name)
    if produced != info.file_size:
        return issue("archive.size_mismatch", value=name)
    if crc != info.crc:
        return issue("archive.crc_mismatch", value=name)
    return produced


def clear_dir(path: Path) -> None:
    """Remove everything inside ``path`` (used by callers after a failed unpack)."""
    for child in Path(path).iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
