"""Entry points: validate an unpacked folder or an upload (ZIP or folder).

``validate_path`` is what ``rostergate validate`` and the pipeline call. It
never raises for bad input: everything wrong ends up as issues in the
:class:`~rostergate.formats.issues.ValidationResult`. The codes in :data:`UNREADABLE_CODES` mean
"cannot read" (CLI exit 2, see :func:`cannot_read`). The work is CPU-bound and
blocking; the daemon runs it in a process pool, off its event loop.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from rostergate.formats.catalogue import issue
from rostergate.formats.issues import ValidationResult
from rostergate.formats.read.archive import ArchiveLimits, unpack
from rostergate.formats.read.detect import detect_format, oneroster_version
from rostergate.formats.read.text import EncodingPolicy
from rostergate.formats.validate.asm import validate_asm
from rostergate.formats.validate.collect import DEFAULT_CAP, Collector
from rostergate.formats.validate.oneroster import validate_oneroster
from rostergate.formats.validate.profiles import Profile, get_profile

DEFAULT_LIMITS = ArchiveLimits()  # frozen: safe to share as a default

Progress = Callable[[str], None]
FORMATS = ("auto", "asm", "oneroster", "oneroster-1.1", "oneroster-1.2")
#: What truly cannot be read (CLI exit 2): no such input, not a ZIP, or a ZIP whose bytes cannot
#: be trusted or decoded (encrypted, damaged, lengths that disagree, an unknown compression).
#: Anything that was read and found wanting (an empty archive, a folder with the wrong files,
#: an invalid CSV) is an invalid upload: exit 1.
UNREADABLE_CODES = frozenset({
    "input.unreadable", "archive.not_a_zip", "archive.encrypted", "archive.crc_mismatch", "archive.size_mismatch",
    "archive.overlapping_entries", "archive.unsupported_compression",
})


def validate_dir(
    folder: Path,
    format: str = "auto",
    profile: str | Profile = "strict",
    *,
    encoding_policy: EncodingPolicy = "convert",
    progress: Progress | None = None,
    cap: int = DEFAULT_CAP,
) -> ValidationResult:
    """Validate the CSV files of an unpacked upload in ``folder``.

    ``format`` is ``"auto"``, ``"asm"`` or ``"oneroster"`` (``ValueError`` for
    anything else, as for an unknown ``profile``).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose one of auto, asm, oneroster")
    collector = Collector(get_profile(profile), cap=cap)
    folder = Path(folder)
    fmt = detect_format(folder) if format == "auto" else format
    if fmt is None:
        collector.add("format.unknown", reason=_what_was_found(folder))
        return ValidationResult(None, collector.issues())
    try:
        if fmt == "asm":
            validate_asm(folder, collector, encoding_policy=encoding_policy, progress=progress)
        else:
            pkg = validate_oneroster(folder, collector, encoding_policy=encoding_policy, progress=progress)
            version = pkg.version or (fmt.rsplit("-", 1)[1] if "-" in fmt else oneroster_version(folder))
            fmt = f"oneroster-{version}"
    except Exception as exc:  # a bug must not lose the report; the type (no data) says where
        _raise_if_out_of_memory(exc)
        collector.add("internal.error", reason=type(exc).__name__)
    return ValidationResult(fmt, collector.issues())


def validate_asm_files(
    files: Mapping[str, bytes | pd.DataFrame], profile: str | Profile = "asm", *, cap: int = DEFAULT_CAP,
    read: dict[str, pd.DataFrame] | None = None,
) -> ValidationResult:
    """Validate ASM files held in memory, as :func:`validate_dir` would on disk.

    ``files`` maps each file name to its bytes or, where parsing the bytes certainly
    gives it back (``asmwrite.Serialised.verbatim``), to the frame itself. For the
    converter's output: it is checked from what will be zipped. ``read``, when given,
    receives each file name and the frame its content was read as (bytes parsed once,
    for whoever needs the rows next).
    """
    collector = Collector(get_profile(profile), cap=cap)
    try:
        tables = validate_asm(files, collector)
        if read is not None:
            read.update({table.name: table.frame for table in tables.values()})
    except Exception as exc:  # as in validate_dir: the report survives a bug
        _raise_if_out_of_memory(exc)
        collector.add("internal.error", reason=type(exc).__name__)
    return ValidationResult("asm", collector.issues())


def _raise_if_out_of_memory(exc: Exception) -> None:
    """Out of memory is the process's limit, neither a bug nor a rule the upload breaks: let it through.

    Under an address-space limit a thread's stack may be what no longer fits, and
    ``threading`` says so as ``RuntimeError("can't start new thread")``.
    """
    if isinstance(exc, MemoryError):
        raise exc
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        raise MemoryError("no memory left to start a thread") from exc


def validate_path(
    path: Path,
    format: str = "auto",
    profile: str | Profile = "strict",
    progress: Progress | None = None,
    *,
    encoding_policy: EncodingPolicy = "convert",
    limits: ArchiveLimits = DEFAULT_LIMITS,
    cap: int = DEFAULT_CAP,
) -> ValidationResult:
    """Validate a ZIP upload (unpacked safely into a temporary folder) or a folder."""
    path = Path(path)
    if path.is_dir():
        return validate_dir(path, format, profile, encoding_policy=encoding_policy, progress=progress, cap=cap)
    if not path.is_file():
        return ValidationResult(None, [issue("input.unreadable", value=str(path), reason="no such file or folder")])
    if progress:
        progress("unpacking")
    with tempfile.TemporaryDirectory(prefix="rostergate-validate-") as tmp:
        archive_issues = unpack(path, Path(tmp), limits)
        if any(i.severity == "error" for i in archive_issues):
            return ValidationResult(None, archive_issues)
        result = validate_dir(Path(tmp), format, profile, encoding_policy=encoding_policy, progress=progress,
                              cap=cap)
    result.issues[:0] = archive_issues
    return result


def cannot_read(result: ValidationResult) -> bool:
    """True when the upload could not be read at all (``rostergate validate`` exit code 2)."""
    return any(i.code in UNREADABLE_CODES for i in result.issues)


def _what_was_found(folder: Path) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
    except OSError:
        names = []
    found = ", ".join(names[:10]) + (" …" if len(names) > 10 else "") if names else "no files"
    return f"no manifest.csv and not the six ASM files (found: {found})"
