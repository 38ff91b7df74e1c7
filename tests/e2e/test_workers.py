"""Lost workers, with the real daemon: kill -9 a worker mid-run, twice, and kill -9 the daemon.

A synthetic district (``bench/gen_district.py``, 50,000 students) keeps the
worker busy for a few seconds, long enough to kill it while it prepares the
run: the moment is seen from outside, as the run being ``processing`` and its
``work/source`` folder (made by ``prepare`` in the worker) being new. Every
wait is bounded.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from tests import procs
from tests.conftest import ONEROSTER_11_VALID, ROOT, Daemon, local_flow, make_keypair, require_tool, zip_folder
from tests.sftp.helpers import sftp_batch

pytestmark = pytest.mark.e2e

ACCOUNT = "district-w"
STUDENTS = 50_000
FINAL = ("delivered", "rejected", "failed", "held", "discarded", "superseded")


# One worker: the tests find it, kill it and watch it replaced (the default is one per core).
ONE_WORKER = "[server.workers]\nprocesses = 1\n"


def _flow(outbox: Path) -> str:
    # Rosters of very different sizes follow each other here: the safeguard would hold them.
    return local_flow(ACCOUNT, outbox) + "[flows.safeguards]\nenabled = false\n"


@pytest.fixture(scope="module")
def district_zip(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("gen_district", ROOT / "bench" / "gen_district.py")
    assert spec and spec.loader
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    root = tmp_path_factory.mktemp("district")
    generator.generate(root / "csv", STUDENTS, "1.1")
    return zip_folder(root / "csv", root / "district.zip")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_tool("sftp")
    root = tmp_path_factory.mktemp("workers")
    daemon = Daemon(root, _flow(root / "outbox"), ONE_WORKER).start()
    key = make_keypair(root, "tenant_key")
    daemon.cli_json("accounts", "create", ACCOUNT, "--public-key", f"{key}.pub")
    yield {"daemon": daemon, "key": key, "root": root}
    daemon.stop()


def _put(world, source: Path, name: str) -> None:
    result = sftp_batch(world["daemon"], ACCOUNT, f"put {source} {name}\n", key=world["key"])
    assert result.returncode == 0, result.stderr


def _run_of(world, name: str) -> dict | None:
    runs = [r for r in procs.runs_fast(world["daemon"].data_dir, ACCOUNT) if r["upload_name"] == name]
    assert len(runs) <= 1, runs
    return runs[0] if runs else None


def _final(world, name: str, timeout: float = 90) -> dict:
    def done() -> bool:
        run = _run_of(world, name)
        return run is not None and run["status"] in FINAL

    assert procs.wait_for(done, timeout=timeout, interval=0.2), (_run_of(world, name),
                                                                 world["daemon"].log.read_text()[-4000:])
    run = _run_of(world, name)
    assert run is not None
    return run


def _delivered(world, name: str) -> None:
    source = zip_folder(ONEROSTER_11_VALID, world["root"] / name)
    _put(world, source, name)
    run = _final(world, name, timeout=60)
    assert run["status"] == "delivered", (run, world["daemon"].log.read_text()[-3000:])


def _the_worker(daemon: Daemon, not_this: int | None = None, timeout: float = 30) -> int:
    """The daemon's one worker process (other than ``not_this``), waiting for it to start."""
    found: list[int] = []

    def started() -> bool:
        found[:] = [p for p in procs.worker_pids(daemon.process.pid) if p != not_this and procs.alive(p)]
        return len(found) == 1

    assert procs.wait_for(started, timeout=timeout), f"workers: {found}"
    return found[0]


def _kill_while_preparing(world, name: str, after_ns: int, not_this: int | None = None) -> tuple[int, int]:
    """Wait until the run of ``name`` is being prepared in a worker (its work folder made after
    ``after_ns``), kill -9 that worker; returns its pid and the moment of the kill."""
    daemon: Daemon = world["daemon"]
    source_dir: list[Path] = []

    def preparing() -> bool:
        run = _run_of(world, name)
        if run is None or run["status"] != "processing":
            return False
        folder = daemon.data_dir / "spool" / run["id"] / "work" / "source"
        try:
            fresh = folder.stat().st_ctime_ns > after_ns
        except FileNotFoundError:
            return False
        source_dir[:] = [folder]
        return fresh

    assert procs.wait_for(preparing, timeout=60, interval=0.02), (_run_of(world, name), daemon.log.read_text()[-3000:])
    worker = _the_worker(daemon, not_this)
    assert _run_of(world, name)["status"] == "processing"  # still in the middle of it
    killed_at = time.time_ns()
    procs.kill(worker)
    return worker, killed_at


def _steps(world, run_id: str) -> list[dict]:
    return world["daemon"].cli_json("runs", "show", run_id)["steps"]


def test_a_worker_killed_mid_run_is_replaced_and_the_run_retried(world, district_zip):
    _delivered(world, "warm.zip")  # the worker has started
    started = time.time_ns()
    _put(world, district_zip, "district-1.zip")
    killed, _ = _kill_while_preparing(world, "district-1.zip", started)
    run = _final(world, "district-1.zip")
    assert run["status"] == "delivered", (run, world["daemon"].log.read_text()[-3000:])
    lost = [s for s in _steps(world, run["id"]) if s["name"] == "processing" and s["status"] == "failed"]
    assert len(lost) == 1 and lost[0]["message"].startswith("attempt 1: the worker process was killed")
    assert "trying once more in a new worker" in lost[0]["message"]
    assert killed not in procs.worker_pids(world["daemon"].process.pid)
    _delivered(world, "later-1.zip")


def test_a_worker_killed_twice_fails_the_run_truthfully_and_the_next_upload_is_delivered(world, district_zip):
    _delivered(world, "warm-2.zip")
    started = time.time_ns()
    _put(world, district_zip, "district-2.zip")
    first, killed_at = _kill_while_preparing(world, "district-2.zip", started)
    _kill_while_preparing(world, "district-2.zip", killed_at, not_this=first)
    run = _final(world, "district-2.zip")
    assert run["status"] == "failed", run
    message = run["message"]
    assert "the worker process was killed" in message and "(tried 2 times)" in message
    assert "This is not a rule your data breaks" in message
    assert f"rostergate runs retry {run['id']}" in message
    report = (world["daemon"].home(ACCOUNT) / "reports" / f"{run['id']}.txt").read_text()
    assert "FAILED" in report and message in report
    assert "need not upload" not in report.lower()
    failed = [s["message"] for s in _steps(world, run["id"]) if s["name"] == "processing" and s["status"] == "failed"]
    assert [m.split(":")[0] for m in failed] == ["attempt 1", "attempt 2"]
    _delivered(world, "after-failure.zip")


def test_no_worker_outlives_a_killed_daemon(daemon_factory, tmp_path):
    require_tool("sftp")
    daemon = daemon_factory(_flow(tmp_path / "outbox"), ONE_WORKER).start()
    key = make_keypair(tmp_path, "tenant_key")
    daemon.cli_json("accounts", "create", ACCOUNT, "--public-key", f"{key}.pub")
    world = {"daemon": daemon, "key": key, "root": tmp_path}
    _delivered(world, "roster.zip")
    worker = _the_worker(daemon)
    family = procs.descendants(daemon.process.pid)  # the worker and multiprocessing's resource tracker
    assert worker in family
    daemon.process.kill()
    daemon.process.wait(10)
    assert procs.wait_for(lambda: not any(procs.alive(p) for p in family), timeout=10), \
        {p: procs.cmdline(p) for p in family if procs.alive(p)}
    assert not procs.alive(worker)
