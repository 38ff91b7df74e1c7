"""Unpacking uploaded ZIPs safely.

:func:`unpack` is the only way an upload's ZIP reaches the disk. Before writing
anything it checks every entry's name (no ``..``, absolute paths, drive letters
or backslashes; no duplicates or names differing only by case), rejects
encrypted and non-regular entries, and checks from the local headers itself
that no two entries share bytes (overlapping entries are the trick behind
non-recursive zip bombs; we do not rely on the Python version's own check).
While streaming it enforces the limits on what was *actually* decompressed,
never trusting the sizes the headers claim. ``__MACOSX/``, ``._*`` and
``.DS_Store`` are ignored; files inside exactly one top-level folder are
accepted with a warning and flattened (ASM forbids folders, asm.md §2.3;
oneroster.md §2 G12), deeper nesting is an error.

:func:`is_complete_zip` tells the SFTP server whether an upload is finished.
"""

from __future__ import annotations

import re
import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rostergate.formats.catalogue import issue
from rostergate.formats.issues import Issue

_CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, …, name length, extra length
_LOCAL_SIG = b"PK\x03\x04"
_EOCD_SIG = b"PK\x05\x06"
_DRIVE = re.compile(r"^[A-Za-z]:")
_SUPPORTED_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


@dataclass(frozen=True)
class ArchiveLimits:
    """Zip-bomb limits, enforced on the bytes actually decompressed."""

    max_entries: int = 1_000
    max_total_size: int = 4 * 1024**3
    max_ratio: float = 200.0
    #: the ratio is judged only once an entry has produced this much
    ratio_grace: int = 1 << 20


def unpack(zip_path: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()) -> list[Issue]:
    """Extract ``zip_path`` into the existing empty folder ``dest``.

    Returns the issues found. If any has severity ``error`` the caller must
    stop; in that case ``dest`` is left empty (nothing is ever written outside
    it). Never raises for bad archive content.
    """
    issues: list[Issue] = []
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        return [issue("archive.not_a_zip", reason=_reason(exc))]
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            return [issue("archive.too_many_entries", limit=limits.max_entries)]
        kept = _check_names(infos, issues)
        issues.extend(_check_overlaps(zip_path, infos))
        targets = _plan_layout(kept, issues)
        if any(i.severity == "error" for i in issues):
            return issues
        if not targets:
            return issues + [issue("archive.empty")]
        written: list[Path] = []
        if not _extract(zf, targets, dest, limits, issues, written):
            for path in written:
                path.unlink(missing_ok=True)
    return issues


def _check_names(infos: list[zipfile.ZipInfo], issues: list[Issue]) -> list[zipfile.ZipInfo]:
    """Name and entry-type checks; returns the entries worth extracting."""
    kept: list[zipfile.ZipInfo] = []
    exact: set[str] = set()
    folded: dict[str, str] = {}
    for info in infos:
        name = info.filename
        if "\\" in name:
            issues.append(issue("archive.backslash_path", value=name))
            continue
        if name.startswith("/") or _DRIVE.match(name):
            issues.append(issue("archive.absolute_path", value=name))
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
        if info.compress_type not in _SUPPORTED_COMPRESSION:
            issues.append(issue("archive.unsupported_entry", value=name,
                                reason=f"compression method {info.compress_type}"))
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


def _check_overlaps(zip_path: Path, infos: list[zipfile.ZipInfo]) -> list[Issue]:
    """Check from the local headers that entries occupy disjoint byte ranges."""
    spans: list[tuple[int, int, str]] = []
    try:
        with open(zip_path, "rb") as fh:
            size = fh.seek(0, 2)
            for info in infos:
                fh.seek(info.header_offset)
                head = fh.read(_LOCAL_HEADER.size)
                if len(head) < _LOCAL_HEADER.size:
                    return [issue("archive.overlapping_entries", value=info.filename, reason="header beyond the end")]
                sig, name_len, extra_len = _LOCAL_HEADER.unpack(head)
                if sig != _LOCAL_SIG:
                    return [issue("archive.overlapping_entries", value=info.filename, reason="no local header")]
                end = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + info.compress_size
                if end > size:
                    return [issue("archive.overlapping_entries", value=info.filename, reason="data beyond the end")]
                spans.append((info.header_offset, end, info.filename))
    except OSError as exc:
        return [issue("archive.not_a_zip", reason=_reason(exc))]
    spans.sort()
    for (_, prev_end, prev_name), (start, _, name) in zip(spans, spans[1:]):
        if start < prev_end:
            return [issue("archive.overlapping_entries", value=name, reason=f"shares bytes with '{prev_name}'")]
    return []


def _plan_layout(kept: list[zipfile.ZipInfo], issues: list[Issue]) -> list[tuple[zipfile.ZipInfo, str]]:
    """Map entries to flat target names; at most one enclosing folder is tolerated."""
    parts = {info.filename: PurePosixPath(info.filename).parts for info in kept}
    folders = {p[0] for p in parts.values() if len(p) > 1}
    at_root = [info for info in kept if len(parts[info.filename]) == 1]
    strip = 0
    if len(folders) == 1 and not at_root:
        strip = 1
        issues.append(issue("archive.nested_folder", value=next(iter(folders))))
    targets: list[tuple[zipfile.ZipInfo, str]] = []
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
    zf: zipfile.ZipFile,
    targets: list[tuple[zipfile.ZipInfo, str]],
    dest: Path,
    limits: ArchiveLimits,
    issues: list[Issue],
    written: list[Path],
) -> bool:
    """Stream entries to ``dest``; ``False`` (with an issue) as soon as a limit or check fails."""
    dest = Path(dest).resolve()
    total = 0
    for info, target_name in targets:
        target = (dest / target_name).resolve()
        if target.parent != dest:
            issues.append(issue("archive.path_traversal", value=info.filename))
            return False
        produced = 0
        try:
            with zf.open(info) as src, open(target, "xb") as out:
                written.append(target)
                while chunk := src.read(_CHUNK):
                    produced += len(chunk)
                    total += len(chunk)
                    if total > limits.max_total_size:
                        issues.append(issue("archive.too_large", limit=limits.max_total_size))
                        return False
                    if produced > limits.ratio_grace and produced > limits.max_ratio * max(info.compress_size, 1):
                        issues.append(issue("archive.compression_ratio", value=info.filename, limit=int(limits.max_ratio)))
                        return False
                    out.write(chunk)
        except zipfile.BadZipFile as exc:
            code = "archive.crc_mismatch" if "CRC" in str(exc) else "archive.unsupported_entry"
            issues.append(issue(code, value=info.filename, reason=_reason(exc)))
            return False
        except (EOFError, OSError, RuntimeError, NotImplementedError, ValueError, zipfile.LargeZipFile) as exc:
            issues.append(issue("archive.unsupported_entry", value=info.filename, reason=_reason(exc)))
            return False
        except Exception as exc:  # zlib/bz2/lzma raise their own error types on corrupt data
            issues.append(issue("archive.unsupported_entry", value=info.filename, reason=_reason(exc)))
            return False
        if produced != info.file_size:
            issues.append(issue("archive.size_mismatch", value=info.filename))
            return False
    return True


def is_complete_zip(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> bool:
    """Whether ``path`` is a finished ZIP: end record, central directory and every CRC check out.

    Members are streamed (never held in memory). An archive that hits a zip-bomb
    limit counts as complete: it is finished, :func:`unpack` will reject it.
    Never raises.
    """
    try:
        path = Path(path)
        size = path.stat().st_size
        if size < 22:
            return False
        with open(path, "rb") as fh:
            fh.seek(max(0, size - 65_557))
            tail = fh.read()
        if tail.rfind(_EOCD_SIG) < 0:
            return False
        total = 0
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_entries:
                return True
            for info in infos:
                if info.is_dir():
                    continue
                if info.flag_bits & 0x1 or info.compress_type not in _SUPPORTED_COMPRESSION:
                    continue
                with zf.open(info) as src:
                    while chunk := src.read(_CHUNK):
                        total += len(chunk)
                        if total > limits.max_total_size:
                            return True
        return True
    except Exception:  # any failure to read means "not (yet) a complete ZIP"
        return False


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
