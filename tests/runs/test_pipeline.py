"""The pipeline's delivery step: delivered only with a receipt, and the receipt's bytes are the checked ones."""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from rostergate import config, store, timeutil
from rostergate.accounts import AccountStore
from rostergate.history import History
from rostergate.runs import pipeline
from rostergate.runs.stages import OUTPUT_NAME
from tests.conftest import ONEROSTER_11_VALID, zip_folder


class World:
    """A pipeline with one flow ("a") delivering into ``outbox``; runs are processed one call at a time."""

    def __init__(self, root: Path):
        self.root = root
        self.outbox = root / "outbox"
        self.conn = store.connect(root / "var")
        self.history = History(self.conn)
        raw = {"server": {"data_dir": str(root / "var")},
               "flows": [{"account": "a", "downstream": {"url": self.outbox.as_uri(), "max_attempts": 3}}]}
        self.settings = config.parse(raw, base=root)

    def receive(self, run_id: str = "20261122-080000-aaaaaa") -> Path:
        spool = self.root / "var" / "spool" / run_id
        spool.mkdir(parents=True)
        upload = zip_folder(ONEROSTER_11_VALID, spool / "upload.zip")
        digest = hashlib.sha256(upload.read_bytes()).hexdigest()
        self.history.record_received(run_id, "a", "roster.zip", str(upload), upload.stat().st_size, digest)
        return spool

    def process(self) -> None:
        """Claim the next run that is due and process it (a retry is made due first)."""
        with self.conn:
            self.conn.execute("UPDATE runs SET next_attempt_at = ? WHERE status = 'retrying'",
                              (timeutil.iso(timeutil.now() - timedelta(seconds=1)),))
        run = self.history.claim_next(set())
        assert run is not None
        with ThreadPoolExecutor(1) as executor:
            worker = pipeline.Pipeline(self.settings, self.history, AccountStore(self.conn, self.root / "var"),
                                       executor)
            asyncio.run(worker.process(run))


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


def test_a_prepared_zip_changed_before_the_retry_is_never_delivered(world):
    spool = world.receive()
    world.outbox.write_text("a file where the folder should be")  # the first attempt fails, retryably
    world.process()
    (run,) = world.history.list()
    assert run.status == "retrying" and run.output_sha256
    world.outbox.unlink()
    with open(spool / OUTPUT_NAME, "ab") as prepared:  # changed on disk between the attempts
        prepared.write(b"\0")
    world.process()
    run = world.history.get(run.id)
    assert run.status == "failed" and "not the one that was checked" in run.message
    assert not world.outbox.exists() or list(world.outbox.iterdir()) == []
    assert [d["status"] for d in world.history.deliveries(run.id)] == ["failed"]
    assert not (world.root / "var" / "snapshots" / "a").exists()


def test_delivered_run_stays_delivered_when_the_baseline_cannot_be_saved(world):
    world.receive()
    snapshots = world.root / "var" / "snapshots"
    snapshots.mkdir(parents=True)
    (snapshots / "a").write_text("not a folder: the baseline cannot be written")
    world.process()
    (run,) = world.history.list()
    assert run.status == "delivered", run.message
    assert "safeguard baseline" in run.message
    (receipt,) = world.history.deliveries(run.id)
    delivered = world.outbox / f"a-{run.id}.zip"
    assert receipt["status"] == "delivered"
    assert receipt["sha256"] == hashlib.sha256(delivered.read_bytes()).hexdigest() == run.output_sha256
