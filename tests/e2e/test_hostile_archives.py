"""Hostile uploads through the real daemon: bombs and non-ZIPs become rejected runs, memory stays flat.

OpenSSH's ``sftp`` uploads to ``rostergate serve``; each hostile file must end
as a ``rejected`` run with the right issue code and a report in the tenant's
``reports/``, and neither the daemon nor its worker may grow by more than
:data:`MEMORY_BUDGET` over the daemon's own peak while idle (``VmHWM``).
"""

from __future__ import annotations

import pytest

from tests import procs
from tests import zipcraft as zc
from tests.conftest import Daemon, local_flow, make_keypair, require_tool
from tests.sftp.helpers import sftp_batch, wait_until
from tests.zipcraft import MIB

pytestmark = pytest.mark.e2e

ACCOUNT = "district-h"
MEMORY_BUDGET = 256 * MIB
# Idle, the daemon peaks at about 175 MB and a worker at about 150 MB: an LZMA bomb of 384 MiB held in
# memory would break the budget in either (256 MiB would not, in the worker); it takes about 2.5 s to make.
LZMA_MIB = 384


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_tool("sftp")
    root = tmp_path_factory.mktemp("hostile")
    daemon = Daemon(root, local_flow(ACCOUNT, root / "outbox")).start()
    key = make_keypair(root, "tenant_key")
    daemon.cli_json("accounts", "create", ACCOUNT, "--public-key", f"{key}.pub")
    wait_until(lambda: procs.peak_rss(daemon.process.pid) > 0, timeout=5)
    yield {"daemon": daemon, "key": key, "root": root, "idle_peak": procs.peak_rss(daemon.process.pid)}
    daemon.stop()


def _upload(world, files: dict[str, bytes]) -> None:
    commands = ""
    for name, data in files.items():
        path = world["root"] / name
        path.write_bytes(data)
        commands += f"put {path} {name}\n"
    result = sftp_batch(world["daemon"], ACCOUNT, commands, key=world["key"])
    assert result.returncode == 0, result.stderr


def _finished_runs(world, names: list[str], timeout: float = 30) -> dict[str, dict]:
    """Wait until each upload in ``names`` has one finished run; the runs shown in full, by upload name."""
    daemon: Daemon = world["daemon"]

    def mine() -> list[dict]:
        return [r for r in procs.runs_fast(daemon.data_dir, ACCOUNT) if r["upload_name"] in names]

    def done() -> bool:
        runs = mine()
        return len(runs) == len(names) and all(r["status"] not in ("received", "processing") for r in runs)

    assert procs.wait_for(done, timeout=timeout, interval=0.1), (mine(), daemon.log.read_text()[-3000:])
    return {r["upload_name"]: daemon.cli_json("runs", "show", r["id"]) for r in mine()}


def _assert_rejected_with_report(world, shown: dict, code: str, value: str | None = None) -> None:
    assert shown["status"] == "rejected", shown
    errors = [(i["code"], i["value"]) for i in shown["issues"] if i["severity"] == "error"]
    assert [c for c, _ in errors] == [code], errors
    if value is not None:
        assert errors[0][1] == value
    report = world["daemon"].home(ACCOUNT) / "reports" / f"{shown['id']}.txt"
    assert wait_until(report.exists, timeout=10), f"no report for {shown['upload_name']}"
    text = report.read_text()
    assert "REJECTED" in text and shown["upload_name"] in text


def test_bombs_are_rejected_and_memory_stays_flat(world):
    bombs = {
        # 1 GiB of zeros in about 6 KiB of bzip2 streams
        "bomb-bzip2.zip": zc.build_zip([zc.bomb_entry("users.csv", zc.BZIP2, zc.bzip2_zeros(), 1 << 30)]),
        "bomb-lzma.zip": zc.build_zip([zc.bomb_entry("users.csv", zc.LZMA, zc.lzma_zeros(LZMA_MIB),
                                                     LZMA_MIB * MIB)]),
        # 10 MB of deflate: about 10 GiB of zeros
        "bomb-deflate.zip": zc.build_zip([zc.stored("orgs.csv", b"sourcedId,name\n1,A\n"),
                                          zc.bomb_entry("users.csv", zc.DEFLATED, zc.deflate_zeros(10_000),
                                                        10_000 * MIB)]),
    }
    assert len(bombs["bomb-deflate.zip"]) > 10_000_000 and len(bombs["bomb-bzip2.zip"]) < 16_000
    shown = {}
    for name, data in bombs.items():  # one at a time: a newer upload supersedes one still waiting
        _upload(world, {name: data})
        shown.update(_finished_runs(world, [name]))
    _assert_rejected_with_report(world, shown["bomb-bzip2.zip"], "archive.unsupported_compression", "users.csv")
    _assert_rejected_with_report(world, shown["bomb-lzma.zip"], "archive.unsupported_compression", "users.csv")
    _assert_rejected_with_report(world, shown["bomb-deflate.zip"], "archive.compression_ratio", "users.csv")

    daemon_pid = world["daemon"].process.pid
    workers = procs.worker_pids(daemon_pid)
    assert workers, "the runs were prepared in no worker process"
    limit = world["idle_peak"] + MEMORY_BUDGET
    peaks = {pid: procs.peak_rss(pid) for pid in [daemon_pid, *procs.descendants(daemon_pid)]}
    over = {procs.cmdline(pid)[:80]: peak // MIB for pid, peak in peaks.items() if peak > limit}
    assert not over, f"peak MiB over {limit // MIB} (idle daemon {world['idle_peak'] // MIB} + 256): {over}"


def test_a_text_file_named_zip_and_a_damaged_directory_are_rejected_runs(world):
    whole = zc.build_zip([zc.deflated("orgs.csv", b"sourcedId,name\n1,A\n" * 50),
                          zc.deflated("users.csv", b"sourcedId,givenName\n1,B\n" * 50)])
    damaged = bytearray(whole)
    damaged[zc.central_offset(whole, 1)] ^= 0xFF  # the second central record's signature
    uploads = {"roster.zip": b"sourcedId,name\n1,Ada\n2,Grace\n", "damaged-directory.zip": bytes(damaged)}
    shown = {}
    for name, data in uploads.items():
        _upload(world, {name: data})
        shown.update(_finished_runs(world, [name]))
    for name in uploads:
        _assert_rejected_with_report(world, shown[name], "archive.not_a_zip")
        assert name not in {p.name for p in world["daemon"].home(ACCOUNT).iterdir()}


def test_a_truncated_zip_starts_no_run_and_stays(world):
    """(Resuming it with ``reput`` is tests/sftp/test_clients.py's.)"""
    whole = zc.build_zip([zc.stored("users.csv", bytes(range(256)) * 400)])
    _upload(world, {"cut.zip": whole[: len(whole) // 2]})
    kept = world["daemon"].home(ACCOUNT) / "cut.zip"
    assert wait_until(lambda: kept.exists() and kept.stat().st_size == len(whole) // 2, timeout=10)
    _upload(world, {"after.zip": b"not a zip either"})  # a later upload's run proves the intake had its turn
    _finished_runs(world, ["after.zip"])
    assert [r for r in procs.runs_fast(world["daemon"].data_dir, ACCOUNT) if r["upload_name"] == "cut.zip"] == []
    assert kept.stat().st_size == len(whole) // 2
