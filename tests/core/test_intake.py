"""Intake: complete ZIPs become received runs; anything else stays where it is."""

from __future__ import annotations

import asyncio
import json

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
    assert spooled.stat().st_mode & 0o777 == 0o600 and run.size == spooled.stat().st_size
    assert len(run.sha256) == 64
    assert json.loads((intake.spool / run_id / "meta.json").read_text())["account"] == "district-a"


def test_truncated_or_corrupt_zip_stays_and_starts_nothing(tmp_path):
    intake, history, woken = make_intake(tmp_path)
    whole = zip_folder(ONEROSTER_11_VALID, tmp_path / "whole.zip").read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole[:-30])
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(whole[:200] + bytes(len(whole) - 400) + whole[-200:])  # CRCs cannot match
    for path in (truncated, corrupt):
        assert asyncio.run(intake.upload_finished("a", path)) is None
        assert path.exists()
    assert history.list() == [] and woken == []


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
