"""The CPU-bound part of a run: unpack, detect, validate, convert, check the output.

:func:`prepare` runs in a worker process (so the SFTP server never stalls) and
returns plain data: the steps it took, the issues it found and, when the upload
is acceptable, the path of the ZIP to deliver. It never touches the database;
the pipeline records what it returns.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pandas as pd

from rostergate import timeutil
from rostergate.config import InputFormat, OutputFormat
from rostergate.formats.convert.asmwrite import Buffer, ZipStream, serialise, zip64_needed
from rostergate.formats.convert.entry import Conversion, conversion_summary, convert_dir, trace_to_input
from rostergate.formats.convert.mapping import Mapping
from rostergate.formats.holdrules import Changes
from rostergate.formats.issues import Issue
from rostergate.formats.read.archive import unpack
from rostergate.formats.read.csvio import hand_over_loaded_tables, sharing_loaded_tables
from rostergate.formats.read.detect import detect_format
from rostergate.formats.read.text import EncodingPolicy
from rostergate.formats.snapshot import (
    compare,
    save_snapshot,
    snapshot_of_tables,
    snapshot_of_zip,
)
from rostergate.formats.validate.entry import validate_asm_files, validate_dir
from rostergate.formats.validate.profiles import ProfileName
from rostergate.intake import SPOOL_DIR, UPLOAD_NAME, sha256_of
from rostergate.runs.safeguard import load_baseline

WORK_DIR = "work"
_RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")  # history.new_run_id
OUTPUT_NAME = "deliver.zip"
ROWS_NAME = "deliver.rows"  # a prepared run's row snapshot, beside its deliver.zip
CHECKED_UPLOAD = "upload.zip"  # in WORK_DIR: the private copy of the upload that is checked
T = TypeVar("T")
Outcome = tuple[str, str, T]  # a step's status (ok | failed | skipped), its message, and its value
UPLOAD_CHANGED = ("the upload changed after it was received (its SHA-256 is no longer the one recorded at "
                  "intake); nothing was checked or delivered: upload the file again")


@dataclass
class StepRecord:
    name: str
    status: str  # ok | failed | skipped
    started_at: str
    finished_at: str
    message: str = ""
    seconds: float = 0.0


@dataclass
class Prepared:
    """What :func:`prepare` found: ``outcome`` is ``ready`` (deliver ``output``), ``rejected``, or
    ``failed`` (the upload is not the one received: ``message`` says so)."""

    outcome: str
    format: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    output: str | None = None
    summary: str = ""
    output_sha256: str | None = None  # of ``output``, the bytes that passed the checks
    message: str = ""
    # per source file, when it was converted: {"rows": read, "delivered": used, "dropped": {reason: n}}
    counts: dict[str, dict[str, object]] = field(default_factory=dict)
    # The safeguard's diff against the last delivery (when asked for), and when it was made:
    # (started_at, finished_at, seconds).
    changes: Changes | None = None
    compared: tuple[str, str, float] | None = None


class _Steps:
    def __init__(self, prepared: Prepared):
        self.prepared = prepared

    def run(self, name: str, work: Callable[[], Outcome[T]]) -> T:
        started, clock = timeutil.iso_ms(), time.perf_counter()
        try:
            status, message, value = work()
        except Exception as exc:  # recorded as the step's failure, then re-raised for the pipeline
            self._record(name, "failed", f"internal error: {type(exc).__name__}", started, clock)
            raise
        self._record(name, status, message, started, clock)
        return value

    def _record(self, name: str, status: str, message: str, started: str, clock: float) -> None:
        self.prepared.steps.append(
            StepRecord(name, status, started, timeutil.iso_ms(), message, round(time.perf_counter() - clock, 3))
        )


def _private(path: Path) -> int:
    """A new owner-only file, open for writing."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _copy_hashed(source: Path, target: Path) -> str:
    """Copy ``source`` to an owner-only, read-only ``target``; the SHA-256 of the bytes copied."""
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(_private(target), "wb") as out:
        for block in iter(lambda: reader.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    target.chmod(0o400)
    return digest.hexdigest()


def prepare(run_dir: str, upload: str, input_format: InputFormat, output_format: OutputFormat, profile: ProfileName,
            mapping: Mapping | None = None, encoding: EncodingPolicy = "convert",
            upload_sha256: str | None = None, baseline: str | None = None) -> Prepared:
    """Turn the spooled ``upload`` into a deliverable ZIP inside ``run_dir`` (blocking, CPU-bound).

    Everything is checked from a private copy of ``upload`` whose SHA-256 must be
    ``upload_sha256`` (recorded at intake): what is validated is what was received,
    even if a writer still held the spooled file open. Whatever the outcome (ready,
    rejected, or an exception), the extracted CSVs (``run_dir/work``) are removed
    before this returns: student data stays on disk only as the upload and the
    deliverable ZIP.

    With ``baseline`` (the path where the account's last delivered ZIP is kept; the flow's
    safeguards are on), a ready upload is also compared with that delivery
    (:attr:`Prepared.changes`) and its row snapshot is left in ``run_dir``
    (:data:`ROWS_NAME`), to become the baseline once it is delivered. Without
    it (safeguards off) neither is made.
    """
    work = spooled_work_dir(run_dir, upload)  # before anything is removed
    try:
        return _prepare(run_dir, upload, input_format, output_format, profile, mapping, encoding, upload_sha256,
                        baseline)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def spooled_work_dir(run_dir: str | Path, upload: str | Path) -> Path:
    """``run_dir/work``, only when ``run_dir`` is a run's own spool folder holding ``upload``.

    prepare() removes this folder before and after its work. A run's paths come from
    the store; were one ever wrong (``/nowhere/upload.zip`` makes ``run_dir`` the root
    folder, and ``/work`` its work folder), removing ``<run_dir>/work`` would destroy
    whatever lives there, so anything but ``<...>/spool/<run-id>/upload.zip`` is refused.
    """
    folder, spooled = Path(run_dir).resolve(), Path(upload).resolve()
    if not (folder.is_absolute() and spooled.parent == folder and spooled.name == UPLOAD_NAME
            and folder.parent.name == SPOOL_DIR and _RUN_ID.fullmatch(folder.name)):
        raise ValueError("refusing to work outside a run's own spool folder")
    return folder / WORK_DIR


def spooled_run_dir(data_dir: str | Path, run_id: str, upload: str | Path) -> Path:
    """``<data_dir>/spool/<run_id>``, only when ``upload`` (the path the store keeps) is its ``upload.zip``.

    What the pipeline works in, ``runs diff`` reads and retention removes: a run's
    paths come from the store, and one that points anywhere else (another folder, a
    link out of the spool, a run id that is no run id) raises :class:`ValueError`.
    """
    folder = Path(data_dir).resolve() / SPOOL_DIR / run_id
    if not _RUN_ID.fullmatch(run_id) or Path(upload).resolve() != folder / UPLOAD_NAME:
        raise ValueError("refusing a run whose upload is not in its own spool folder")
    spooled_work_dir(folder, upload)  # and prepare()'s own guard
    return folder


def _prepare(run_dir: str, upload: str, input_format: InputFormat, output_format: OutputFormat,
             profile: ProfileName, mapping: Mapping | None, encoding: EncodingPolicy,
             upload_sha256: str | None, baseline: str | None) -> Prepared:
    prepared = Prepared(outcome="rejected")
    steps = _Steps(prepared)
    work = spooled_work_dir(run_dir, upload)
    shutil.rmtree(work, ignore_errors=True)  # a resumed run starts its CPU work afresh
    (Path(run_dir) / ROWS_NAME).unlink(missing_ok=True)  # made again, or not at all (safeguards off)
    source = work / "source"
    source.mkdir(parents=True, mode=0o700)
    checked_upload = work / CHECKED_UPLOAD

    def do_unpack() -> Outcome[bool]:
        copied = _copy_hashed(Path(upload), checked_upload)
        if upload_sha256 is not None and copied != upload_sha256:
            prepared.outcome, prepared.message = "failed", UPLOAD_CHANGED
            return "failed", "the upload changed after it was received", False
        issues = unpack(checked_upload, source)
        prepared.issues.extend(issues)
        errors = sum(i.severity == "error" for i in issues)
        if errors:
            return "failed", f"{errors} problem(s) with the ZIP archive", False
        files = sorted(p.name for p in source.iterdir())
        return "ok", f"{len(files)} file(s)", True

    if not steps.run("unpack", do_unpack):
        return prepared

    def do_detect() -> Outcome[str | None]:
        found = detect_format(source)
        if input_format != "auto" and found and not found.startswith(input_format):
            prepared.issues.append(Issue(
                "error", "format.unexpected",
                f"this account expects {input_format} uploads but the ZIP holds {found}; "
                "upload the format the flow is configured for", hint="upload the format the flow is configured for",
            ))
            return "failed", f"found {found}, expected {input_format}", None
        return ("ok" if found else "failed"), found or "format not recognised", found

    prepared.format = steps.run("detect", do_detect)

    def do_validate() -> Outcome[bool]:
        result = validate_dir(source, format=input_format, profile=profile, encoding_policy=encoding)
        prepared.format = prepared.format or result.format
        prepared.issues.extend(result.issues)
        errors = len(result.errors)
        warnings = len(result.issues) - errors
        return ("ok" if result.valid else "failed"), f"{errors} error(s), {warnings} warning(s)", result.valid

    # name -> what the output check reads: the frame where parsing the bytes certainly
    # gives it back (Serialised.verbatim: ids, plain names), else the bytes
    output_check: dict[str, pd.DataFrame | bytes] = {}
    conversions: list[Conversion] = []  # the one whose output is checked: its lineage places what the check finds
    outputs: list[_OutputZip] = []  # the deliverable ZIP being written, once the conversion worked

    def converts() -> bool:
        """ASM output is converted; ASM input is normalised even when the output is "same"."""
        return output_format == "asm" or prepared.format == "asm"

    def do_convert() -> Outcome[bool]:
        if not converts():
            shutil.copyfile(checked_upload, Path(run_dir) / OUTPUT_NAME)
            return "skipped", "output = same: the upload is delivered as it came", True
        assert prepared.format is not None  # converting starts once the format is known
        hand_over_loaded_tables()  # the converter reads each table last: what it does not keep is freed early
        conversion = convert_dir(source, prepared.format, mapping)
        sharing.close()  # the parsed input is not needed any more: freed before the output is serialised
        prepared.issues.extend(conversion.issues)
        if not conversion.ok:
            return "failed", "conversion failed", False
        prepared.counts = {name: {"rows": c.input, "delivered": c.output, "dropped": dict(sorted(c.dropped.items()))}
                           for name, c in sorted(conversion.counts.items())}
        conversions.append(conversion)
        output = _OutputZip(Path(run_dir) / OUTPUT_NAME, conversion.tables, writing)
        outputs.append(output)
        for name in sorted(conversion.tables):
            frame = conversion.tables[name]
            serialised = serialise(frame)
            output_check[name] = checked = serialised.check_input(frame)
            # a frame's CSV is made batch by batch as it is deflated; bytes made for the check are deflated as they are
            output.add(name, (checked,) if isinstance(checked, bytes) else serialised.chunks())
        prepared.summary = conversion_summary(conversion)
        return "ok", prepared.summary.splitlines()[0] if prepared.summary else "converted", True

    def do_check_output() -> Outcome[bool]:
        if not outputs:
            return "skipped", "", True
        # deflating the ZIP's entries goes on beside the checks (both release the GIL)
        read: dict[str, pd.DataFrame] = {}
        result = validate_asm_files(output_check, profile="asm", read=read)
        output_check.update(read)  # the tables checked as bytes, now as their frames (for the safeguard's rows)
        outputs[0].finish()
        if not result.valid:
            prepared.issues.extend(trace_to_input(result, conversions[0], mapping))
            return "failed", f"{len(result.errors)} error(s) in the converted files", False
        return "ok", "the ASM files pass the ASM rules", True

    with ExitStack() as writing:
        # Validation, then conversion: one parse of each file between them (sharing_loaded_tables),
        # each with the worker's threads to itself. A conversion beside the validation fought it for
        # the same cores (slower under load, more CPU) and was wasted on a rejected upload.
        with ExitStack() as sharing:
            sharing.enter_context(sharing_loaded_tables())
            if not steps.run("validate", do_validate) or prepared.format is None:
                return prepared
            if not steps.run("convert", do_convert):
                return prepared
        if not steps.run("check-output", do_check_output):
            return prepared
    prepared.outcome = "ready"
    prepared.output = str(Path(run_dir) / OUTPUT_NAME)
    prepared.output_sha256 = sha256_of(Path(prepared.output))
    if baseline is not None:
        _compare(prepared, Path(run_dir), Path(baseline), output_check, converted=bool(outputs))
    return prepared


class _OutputZip:
    """The deliverable ZIP at ``path``, written while the run goes on.

    The caller hands over each table's CSV (in name order, the ZIP's) as an iterable of
    pieces; one background thread draws the pieces (making a big table's CSV a batch of rows
    at a time) and deflates and writes them in that order, so writing overlaps with the
    output check and no big CSV is ever whole in memory. The file and the thread belong
    to ``stack`` (closed with it, after the thread is done).
    """

    def __init__(self, path: Path, tables: dict[str, pd.DataFrame], stack: ExitStack) -> None:
        out = stack.enter_context(open(path, "wb"))  # noqa: SIM115 (closed by the stack)
        self._thread = stack.enter_context(ThreadPoolExecutor(max_workers=1))  # left first: done before out closes
        self._stream = ZipStream(out, large=zip64_needed(tables))
        self._pending: list[Future[None]] = []

    def add(self, name: str, chunks: Iterable[Buffer]) -> None:
        self._pending.append(self._thread.submit(self._stream.add, name, chunks))

    def finish(self) -> None:
        """Wait until every table is written (raising what writing one raised), then end the archive."""
        for pending in self._pending:
            pending.result()
        self._stream.close()


def _compare(prepared: Prepared, run_dir: Path, baseline: Path, checked: dict[str, pd.DataFrame | bytes],
             converted: bool) -> None:
    """The safeguard's diff: this delivery's row snapshot (kept beside it for when it is delivered) against
    the account's last delivery (``baseline``: where its ZIP is kept)."""
    started, clock = timeutil.iso_ms(), time.perf_counter()
    if converted:  # the frames in memory: as converted, or as the (passed) output check read them from their bytes
        frames = {name: frame for name, frame in checked.items() if isinstance(frame, pd.DataFrame)}
        current = snapshot_of_tables(frames)
    else:  # forwarded as it came: whatever ASM files the ZIP holds
        current = snapshot_of_zip(run_dir / OUTPUT_NAME)
    save_snapshot(current, run_dir / ROWS_NAME)
    prepared.changes = compare(load_baseline(baseline), current)
    prepared.compared = (started, timeutil.iso_ms(), round(time.perf_counter() - clock, 3))
