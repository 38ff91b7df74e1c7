"""A run's CPU work never removes anything outside the run's own spool folder.

prepare() clears ``<run_dir>/work`` before and after its work, and ``run_dir`` comes
from a path kept in the store. A wrong one (``/nowhere/upload.zip``) once made that
``/work``, and the whole checkout went: these tests keep it from happening again.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rostergate import store
from rostergate.history import History
from rostergate.runs.stages import prepare, spooled_work_dir
from tests.conftest import ONEROSTER_11_VALID, local_flow, zip_folder


def _victim(tmp_path: Path) -> Path:
    folder = tmp_path / "victim"
    (folder / "work").mkdir(parents=True)
    (folder / "work" / "keep.txt").write_text("not the daemon's")
    zip_folder(ONEROSTER_11_VALID, folder / "upload.zip")
    return folder


@pytest.mark.parametrize("layout", ["not-a-spool", "bad-run-id", "upload-elsewhere"])
def test_prepare_refuses_a_folder_that_is_not_a_runs_spool_folder(tmp_path, layout):
    victim = _victim(tmp_path)
    run_dir, upload = victim, victim / "upload.zip"
    if layout == "bad-run-id":
        run_dir = tmp_path / "spool" / "not-a-run"
        run_dir.mkdir(parents=True)
        (run_dir / "work").mkdir()
        upload = run_dir / "upload.zip"
    elif layout == "upload-elsewhere":
        run_dir = tmp_path / "spool" / "20261130-120000-abcdef"
        run_dir.mkdir(parents=True)
    with pytest.raises(ValueError, match="spool folder"):
        prepare(str(run_dir), str(upload), "auto", "asm", "strict")
    assert (victim / "work" / "keep.txt").exists()
    assert (run_dir / "work").exists() or layout != "bad-run-id"


def test_a_runs_own_spool_folder_is_accepted(tmp_path):
    run_dir = tmp_path / "spool" / "20261130-120000-abcdef"
    assert spooled_work_dir(run_dir, run_dir / "upload.zip") == run_dir.resolve() / "work"


def test_a_stored_run_pointing_outside_the_spool_fails_and_removes_nothing(daemon_factory, tmp_path):
    victim = _victim(tmp_path)
    daemon = daemon_factory(local_flow("district-a", tmp_path / "outbox"))
    conn = store.connect(daemon.data_dir)
    History(conn).record_received("20261130-120000-abcdef", "district-a", "roster.zip",
                                  str(victim / "upload.zip"), 1, "0" * 64)
    conn.close()
    daemon.start()
    deadline = time.monotonic() + 30
    runs = daemon.runs()
    while time.monotonic() < deadline and runs[0]["status"] in ("received", "processing"):
        time.sleep(0.3)
        runs = daemon.runs()
    assert runs[0]["status"] == "failed", runs
    assert (victim / "work" / "keep.txt").exists() and (victim / "upload.zip").exists()
