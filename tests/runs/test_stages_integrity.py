"""prepare() checks what was received: a private copy of the spooled upload, against the SHA-256 recorded at intake.

(Beside tests/runs/test_stages.py, which covers the conversion and validation steps.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rostergate.runs.stages import OUTPUT_NAME, UPLOAD_CHANGED, WORK_DIR, prepare
from tests.conftest import ONEROSTER_11_VALID, zip_folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spooled(tmp_path: Path) -> tuple[Path, Path]:
    run_dir = tmp_path / "spool" / "20261130-120000-abcdef"  # a run's spool folder: all prepare() works in
    run_dir.mkdir(parents=True)
    upload = zip_folder(ONEROSTER_11_VALID, run_dir / "upload.zip")
    upload.chmod(0o400)
    return run_dir, upload


def test_the_recorded_upload_is_prepared_and_the_output_hash_recorded(tmp_path):
    run_dir, upload = spooled(tmp_path)
    prepared = prepare(str(run_dir), str(upload), "auto", "asm", "strict", upload_sha256=sha256(upload))
    assert prepared.outcome == "ready", prepared.issues
    assert prepared.output_sha256 == sha256(run_dir / OUTPUT_NAME)
    assert not (run_dir / WORK_DIR).exists()


def test_an_upload_changed_after_intake_fails_and_nothing_is_checked_or_written(tmp_path):
    run_dir, upload = spooled(tmp_path)
    recorded = sha256(upload)
    upload.chmod(0o600)
    with open(upload, "ab") as handle:  # a writer that still held the file, or anything else
        handle.write(b"\0")
    prepared = prepare(str(run_dir), str(upload), "auto", "asm", "strict", upload_sha256=recorded)
    assert (prepared.outcome, prepared.message) == ("failed", UPLOAD_CHANGED)
    assert [(s.name, s.status) for s in prepared.steps] == [("unpack", "failed")]
    assert prepared.steps[0].message == "the upload changed after it was received"
    assert prepared.issues == [] and prepared.output is None and prepared.output_sha256 is None
    assert not (run_dir / OUTPUT_NAME).exists() and not (run_dir / WORK_DIR).exists()


def test_output_same_delivers_the_checked_copy(tmp_path):
    run_dir, upload = spooled(tmp_path)
    prepared = prepare(str(run_dir), str(upload), "auto", "same", "strict", upload_sha256=sha256(upload))
    assert prepared.outcome == "ready", prepared.issues
    assert (run_dir / OUTPUT_NAME).read_bytes() == upload.read_bytes()
    assert prepared.output_sha256 == sha256(upload)
