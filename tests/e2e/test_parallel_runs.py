"""Runs in parallel, with the real daemon: two workers, several accounts uploading at once.

Three accounts each upload three districts one after the other (OpenSSH ``sftp``, one
batch per account, the three batches at the same time). Each account's runs must be
recorded in the order its uploads finished and processed one at a time, in that order:
an older upload is never delivered after a newer one (a newer upload may supersede one
still waiting). Runs of different accounts must overlap in the workers (their CPU steps
run at the same time: one worker could not do that). Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from tests import procs
from tests.conftest import ROOT, Daemon, local_flow, make_keypair, require_tool, zip_folder
from tests.sftp.helpers import sftp_batch

pytestmark = pytest.mark.e2e

ACCOUNTS = ("district-p", "district-q", "district-r")
UPLOADS = ("u1.zip", "u2.zip", "u3.zip")
STUDENTS = 4_000  # a run keeps a worker busy for a few tenths of a second
CPU_STEPS = ("unpack", "validate", "convert", "check-output")  # done in a worker
FINAL = ("delivered", "rejected", "failed", "held", "discarded", "superseded")


def _generate(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location("gen_district", ROOT / "bench" / "gen_district.py")
    assert spec and spec.loader
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generator.generate(root / "csv", STUDENTS, "1.1")
    return zip_folder(root / "csv", root / "district.zip")


def _when(stamp: str) -> datetime:
    assert "." in stamp, f"step times carry milliseconds: {stamp}"
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _history(data_dir: Path) -> dict[str, list[dict]]:
    """Per account, its runs in the order they were recorded, each with its steps."""
    with sqlite3.connect(f"file:{data_dir / 'rostergate.db'}?mode=ro", uri=True, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        runs = [dict(r) for r in conn.execute("SELECT id, account, upload_name, status FROM runs ORDER BY rowid")]
        for run in runs:
            run["steps"] = [dict(s) for s in conn.execute(
                "SELECT name, status, started_at, finished_at FROM steps WHERE run_id = ? ORDER BY seq", (run["id"],))]
    return {account: [r for r in runs if r["account"] == account] for account in ACCOUNTS}


def _span(run: dict, names: tuple[str, ...] | None = None) -> tuple[datetime, datetime]:
    steps = [s for s in run["steps"] if names is None or s["name"] in names]
    return min(_when(s["started_at"]) for s in steps), max(_when(s["finished_at"]) for s in steps)


def test_accounts_run_side_by_side_and_each_account_in_upload_order(tmp_path):
    require_tool("sftp")
    district = _generate(tmp_path)
    flows = "".join(local_flow(account, tmp_path / "outbox" / account) for account in ACCOUNTS)
    daemon = Daemon(tmp_path, flows, "[server.workers]\nprocesses = 2\n").start()
    try:
        key = make_keypair(tmp_path, "tenant_key")
        for account in ACCOUNTS:
            daemon.cli_json("accounts", "create", account, "--public-key", f"{key}.pub")
        # Both workers are started with the daemon, before any upload needs one.
        assert procs.wait_for(lambda: len(procs.worker_pids(daemon.process.pid)) == 2, timeout=60), \
            daemon.log.read_text()[-3000:]
        batch = "".join(f"put {district} {name}\n" for name in UPLOADS)
        with ThreadPoolExecutor(len(ACCOUNTS)) as clients:
            results = list(clients.map(lambda account: sftp_batch(daemon, account, batch, key=key, timeout=120),
                                       ACCOUNTS))
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]

        def settled() -> bool:
            history = _history(daemon.data_dir)
            return all(len(runs) == len(UPLOADS) and all(r["status"] in FINAL for r in runs)
                       for runs in history.values())

        assert procs.wait_for(settled, timeout=120, interval=0.2), (_history(daemon.data_dir),
                                                                    daemon.log.read_text()[-3000:])
        history = _history(daemon.data_dir)
    finally:
        daemon.stop()

    for account, runs in history.items():
        assert [r["upload_name"] for r in runs] == list(UPLOADS), account  # recorded as they finished
        assert runs[-1]["status"] == "delivered", runs[-1]
        assert {r["status"] for r in runs} <= {"delivered", "superseded"}, runs
        delivered = [r for r in runs if r["status"] == "delivered"]
        finished = [_span(r)[1] for r in delivered]
        assert finished == sorted(finished), account  # an older upload is never delivered after a newer one
        worked = [_span(r) for r in runs if r["steps"]]
        for (_, end), (start, _) in zip(worked, worked[1:]):
            assert end <= start, account  # one run of an account at a time
        assert len(list((tmp_path / "outbox" / account).iterdir())) == len(delivered)

    cpu = {(account, r["id"]): _span(r, CPU_STEPS) for account, runs in history.items() for r in runs if r["steps"]}
    overlapping = [(a, b) for a, (a_start, a_end) in cpu.items() for b, (b_start, b_end) in cpu.items()
                   if a[0] < b[0] and a_start < b_end and b_start < a_end]
    assert overlapping, cpu  # two accounts' runs were in the workers at the same time
