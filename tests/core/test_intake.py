"""Intake: finished uploads become received runs; a ZIP still missing its end record stays where it is.

Finished means anything but ``ZipState.INCOMPLETE``: a complete ZIP, and also a
file that is no ZIP at all or whose directory is damaged (the pipeline rejects
it with a report) and a complete-looking ZIP with a wrong CRC (``unpack`` finds
it). Only a ZIP that starts like one and has no end record yet is left for a
resumed upload.
"""

from __future__ import annotations

import asyncio
import json
import struct

import pytest

from rostergate import store
from rostergate.history import History
from rostergate.intake import Intake
from rostergate.sftp.server import load_or_create_host_key
from tests.conftest import ONEROSTER_11_VALID, zip_folder


def make_intake(tmp_path):
    woken = []
    history = History(store.connect(tmp_path / "var"))
    return Intake(history, tmp_path / "var", wake=lambda: woken.append(1)), history, woken


def test_complete_zip_is_moved_to_the_spool_and_recorded(tmp_path):
    intake, history, woken = make_intake(tmp_path)
    upload = zip_folder(ONEROSTER_11_VALID, tmp_path / "roster.zip")
    run_id = asyncio.run(intake.upload_finished("district-a", upload))
    assert run_id and not upload.exists() and woken == [1]
    run = history.get(run_id)
    assert (run.status, run.account, run.upload_name) == ("received", "district-a", "roster.zip")
    spooled = intake.spool / run_id / "upload.zip"
    assert spooled.stat().st_mode & 0o777 == 0o400 and run.size == spooled.stat().st_size  # read-only from here
    assert len(run.sha256) == 64
    assert json.loads((intake.spool / run_id / "meta.json").read_text())["account"] == "district-a"


def test_truncated_zip_stays_and_starts_nothing(tmp_path):
    intake, history, woken = make_intake(tmp_path)
    whole = zip_folder(ONEROSTER_11_VALID, tmp_path / "whole.zip").read_bytes()
    for cut in (4, 100, len(whole) // 2, len(whole) - 30, len(whole) - 1):
        truncated = tmp_path / f"truncated-{cut}.zip"
        truncated.write_bytes(whole[:cut])
        assert asyncio.run(intake.upload_finished("a", truncated)) is None
        assert truncated.read_bytes() == whole[:cut]
    assert history.list() == [] and woken == []


def _damaged_directory(whole: bytes) -> bytes:
    data = bytearray(whole)
    data[whole.index(b"PK\x01\x02", len(whole) // 2)] ^= 0xFF  # a central directory record's signature
    return bytes(data)


def _bad_crc(whole: bytes) -> bytes:
    data = bytearray(whole)
    struct.pack_into("<L", data, whole.index(b"PK\x01\x02") + 16, 0xDEADBEEF)  # the first entry's CRC
    return bytes(data)


@pytest.mark.parametrize("damage", [
    lambda whole: b"sourcedId,name\n1,Ada\n",  # a text file named *.zip
    lambda whole: whole[:200] + bytes(len(whole) - 400) + whole[-200:],  # zeros over entries and directory
    _damaged_directory,
    _bad_crc,
], ids=["text", "zeroed-middle", "damaged-directory", "bad-crc"])
def test_a_finished_upload_that_is_no_readable_zip_becomes_a_run(tmp_path, damage):
    """Finished and unreadable, or complete with a wrong CRC: a run, which the pipeline rejects with a report."""
    intake, history, woken = make_intake(tmp_path)
    whole = zip_folder(ONEROSTER_11_VALID, tmp_path / "whole.zip").read_bytes()
    upload = tmp_path / "roster.zip"
    upload.write_bytes(damage(whole))
    content = upload.read_bytes()
    run_id = asyncio.run(intake.upload_finished("a", upload))
    assert run_id and not upload.exists() and woken == [1]
    run = history.get(run_id)
    assert (run.status, run.upload_name, run.size) == ("received", "roster.zip", len(content))
    assert (intake.spool / run_id / "upload.zip").read_bytes() == content


def test_recover_takes_finished_uploads_from_homes_and_leaves_incomplete_ones(tmp_path):
    """At start, a home's finished uploads become runs (a complete ZIP, a file that is no ZIP); a ZIP
    without its end record stays for the tenant to resume."""
    intake, history, _ = make_intake(tmp_path)
    home = tmp_path / "homes" / "a"
    home.mkdir(parents=True)
    whole = zip_folder(ONEROSTER_11_VALID, home / "complete.zip").read_bytes()
    (home / "partial.zip").write_bytes(whole[: len(whole) // 2])
    (home / "text.zip").write_bytes(b"sourcedId,name\n1,Ada\n")
    recovered = intake.recover({"a": home})
    assert sorted(history.get(r).upload_name for r in recovered) == ["complete.zip", "text.zip"]
    assert sorted(p.name for p in home.iterdir()) == ["partial.zip"]


def test_same_name_uploaded_twice_gives_two_runs(tmp_path):
    intake, history, _ = make_intake(tmp_path)
    first = asyncio.run(intake.upload_finished("a", zip_folder(ONEROSTER_11_VALID, tmp_path / "r.zip")))
    second = asyncio.run(intake.upload_finished("a", zip_folder(ONEROSTER_11_VALID, tmp_path / "r.zip")))
    assert first != second and len(history.list()) == 2


def test_host_key_is_generated_once_owner_only_and_reused(tmp_path):
    path = tmp_path / "keys" / "ssh_host_ed25519_key"
    first = load_or_create_host_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_host_key(path).get_fingerprint() == first.get_fingerprint()
    assert first.get_algorithm() == "ssh-ed25519"


def test_uploads_finishing_at_once_are_all_recorded_while_the_store_is_busy(tmp_path, monkeypatch):
    """Several accounts' uploads are recorded from several threads at once, while other connections
    write (the SFTP server's shared state) and the daemon's own connection reads (the pipeline):
    every upload becomes a run. A connection used by two threads at once answered "database is
    locked" at once (a read of one thread open when the other wrote), and the upload was lost."""
    import threading
    import zipfile
    from concurrent.futures import ThreadPoolExecutor

    data = tmp_path / "var"
    shared = History(store.connect(data))  # the daemon's connection, read by the pipeline
    intake = Intake(History(store.connect(data)), data)  # the intake's own, as the daemon gives it
    other = store.connect(data, durable=False)  # the SFTP server's shared state
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            other.execute("INSERT INTO sftp_connections (source, pid, opened_at) VALUES ('192.0.2.1', 1, 0)")
            other.execute("DELETE FROM sftp_connections WHERE source = '192.0.2.1'")

    def reader() -> None:
        while not stop.is_set():
            shared.list(limit=50)

    home = tmp_path / "home"
    home.mkdir()

    def upload(i: int) -> str | None:
        path = home / f"u{i}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("users.csv", "sourcedId\n")
        return intake.accept(f"district-{i % 3}", path)

    background = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in background:
        thread.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            run_ids = list(pool.map(upload, range(120)))
    finally:
        stop.set()
        for thread in background:
            thread.join(timeout=10)
    assert all(run_ids) and len(set(run_ids)) == 120
    assert len(shared.list()) == 120
