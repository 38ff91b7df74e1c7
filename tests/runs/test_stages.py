"""prepare(): the CPU step of a run, with conversion running beside validation."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from rostergate.formats.convert.asmwrite import write_tables_zip
from rostergate.formats.convert.entry import convert_dir
from rostergate.formats.read import csvio
from rostergate.formats.read.csvio import hand_over_loaded_tables, load_table, sharing_loaded_tables
from rostergate.runs import stages
from rostergate.runs.stages import OUTPUT_NAME, prepare
from tests.formats import conftest as kit


def _run_dir(tmp_path: Path) -> Path:
    """A run's spool folder, the only kind prepare() works in."""
    run_dir = tmp_path / "spool" / "20261130-120000-abcdef"
    run_dir.mkdir(parents=True)
    return run_dir


def _upload(folder: Path, run_dir: Path) -> str:
    return str(kit.zip_folder(folder, run_dir / "upload.zip"))


def _conversion_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rostergate-convert")]


def test_valid_oneroster_upload_is_converted_and_checked(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    prepared = prepare(str(run_dir), _upload(kit.OR11, run_dir), "oneroster", "asm", "strict")
    assert prepared.outcome == "ready", prepared.issues
    assert [s.name for s in prepared.steps] == ["unpack", "detect", "validate", "convert", "check-output"]
    assert all(s.status == "ok" for s in prepared.steps)
    expected = convert_dir(kit.OR11, "oneroster-1.1").tables
    with zipfile.ZipFile(prepared.output) as archive:
        assert sorted(archive.namelist()) == sorted(expected)
        rosters = archive.read("rosters.csv").decode().splitlines()
    assert len(rosters) == len(expected["rosters.csv"]) + 1
    assert not (run_dir / "work").exists()  # the unpacked upload does not outlive the run


def test_rejected_upload_is_never_converted_and_delivers_nothing(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    broken = kit.copy(kit.OR11, tmp_path / "broken")
    kit.drop_column(broken, "users.csv", "role")  # a required column: validation fails
    monkeypatch.setattr(stages, "convert_dir", lambda *args: pytest.fail("a rejected upload was converted"))
    run_dir = _run_dir(tmp_path)
    prepared = prepare(str(run_dir), _upload(broken, run_dir), "oneroster", "asm", "strict")
    assert prepared.outcome == "rejected"
    assert [s.name for s in prepared.steps][-1] == "validate"
    assert any(i.code == "oneroster.header.missing_column" and i.file == "users.csv" for i in prepared.issues)
    assert not any(i.code.startswith("convert.") for i in prepared.issues)
    assert not (run_dir / OUTPUT_NAME).exists()
    assert not (run_dir / "work").exists()  # a rejected upload's CSVs are removed at once too
    assert _conversion_threads() == []


def test_extracted_files_are_removed_when_a_step_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in a rule")

    monkeypatch.setattr(stages, "validate_dir", explode)  # the name prepare() calls
    run_dir = _run_dir(tmp_path)
    with pytest.raises(RuntimeError):
        prepare(str(run_dir), _upload(kit.OR11, run_dir), "oneroster", "asm", "strict")
    assert not (run_dir / "work").exists()


def _users(folder: Path, rows: int) -> Path:
    path = folder / "users.csv"
    path.write_text("sourcedId,name\n" + "".join(f"u{i},N {i}\n" for i in range(rows)))
    return path


def _count_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that parse a CSV from now on (csvio.load_bytes), one per parse."""
    parses: list[str] = []
    real = csvio.load_bytes

    def counting(*args, **kwargs):
        parses.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(csvio, "load_bytes", counting)
    return parses


def test_shared_tables_are_parsed_once_even_when_two_threads_ask_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _users(tmp_path, 20_000)
    parses = _count_parses(monkeypatch)
    start = threading.Barrier(4)
    results: list = []

    def reader() -> None:
        start.wait(timeout=10)
        results.append(load_table(path))

    with sharing_loaded_tables():
        threads = [threading.Thread(target=reader) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(parses) == 1 and len(results) == 4
    assert all(r is results[0] for r in results)
    load_table(path)  # outside the block nothing is shared
    assert len(parses) == 2


def test_after_the_hand_over_a_shared_table_goes_to_its_next_reader_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The converter takes each parsed table out of the cache, so what it drops is freed at once."""
    path = _users(tmp_path, 100)
    parses = _count_parses(monkeypatch)
    with sharing_loaded_tables():
        validated = load_table(path)
        assert load_table(path) is validated and len(parses) == 1  # shared while validating
        hand_over_loaded_tables()
        taken = load_table(path)
        assert taken is validated and len(parses) == 1  # the parse is handed over, not repeated
        again = load_table(path)  # the cache forgot it: a later reader parses afresh
        assert again is not taken and len(parses) == 2
        pd.testing.assert_frame_equal(again.frame, taken.frame)


def test_the_streamed_deliverable_is_the_zip_of_the_converted_tables(tmp_path: Path) -> None:
    """The run writes its ZIP entry by entry on a background thread while it checks the output:
    the bytes are exactly the deterministic ZIP of the conversion, whole and in name order."""
    run_dir = _run_dir(tmp_path)
    prepared = prepare(str(run_dir), _upload(kit.OR11, run_dir), "oneroster", "asm", "strict")
    assert prepared.outcome == "ready", prepared.issues
    reference = tmp_path / "reference.zip"
    write_tables_zip(convert_dir(kit.OR11, "oneroster-1.1").tables, reference)
    assert Path(prepared.output).read_bytes() == reference.read_bytes()
    with zipfile.ZipFile(prepared.output) as archive:
        assert archive.testzip() is None and archive.namelist() == sorted(archive.namelist())


def test_a_disk_that_fills_while_the_zip_is_written_fails_the_run_loudly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing happens on another thread; its error still ends the run (never a "ready" run
    with a short ZIP), and the unpacked upload is removed."""
    real_add = stages.ZipStream.add

    def full_disk(self, name, parts):
        if name == "rosters.csv":
            raise OSError(28, "No space left on device")
        return real_add(self, name, parts)

    monkeypatch.setattr(stages.ZipStream, "add", full_disk)
    run_dir = _run_dir(tmp_path)
    with pytest.raises(OSError, match="No space left"):
        prepare(str(run_dir), _upload(kit.OR11, run_dir), "oneroster", "asm", "strict")
    assert not (run_dir / "work").exists()


def test_a_failed_shared_parse_fails_every_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "users.csv"
    path.write_text("sourcedId\nu1\n")

    def broken(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(csvio, "load_bytes", broken)
    with sharing_loaded_tables():
        for _ in range(2):  # the second reader gets the first one's error, not a hang
            with pytest.raises(MemoryError):
                load_table(path)


@pytest.mark.parametrize("profile, code", [("strict", "output.asm.value.invalid_id"),
                                           ("asm", "oneroster.asm.invalid_id")])
def test_an_id_apple_refuses_is_reported_at_the_uploaded_row(tmp_path: Path, profile: str, code: str) -> None:
    """issue 11: with the asm profile validation refuses it; with strict the output check does, and
    the report names users.csv, line and sourcedId, not the converted students.csv."""
    upload = kit.copy(kit.OR12, tmp_path / "at")
    kit.rename_user(upload, "usr-s1", "usr-s1@north")
    run_dir = _run_dir(tmp_path)
    prepared = prepare(str(run_dir), _upload(upload, run_dir), "oneroster", "asm", profile)
    assert prepared.outcome == "rejected"
    found = [(i.code, i.file, i.line, i.column, i.value) for i in prepared.issues if i.severity == "error"]
    assert found == [(code, "users.csv", 4, "sourcedId", "usr-s1@north")]
    assert prepared.output is None
