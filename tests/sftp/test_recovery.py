"""Uploads taken out of a home but not yet recorded when the daemon died are finished at start."""

from __future__ import annotations

from tests.conftest import local_flow
from tests.sftp.helpers import count_runs_fast, roster_zip, wait_until

A = "district-a"


def test_staged_uploads_are_recorded_or_given_back_after_a_crash(daemon_factory, tmp_path):
    daemon = daemon_factory(local_flow(A, tmp_path / "outbox"))
    daemon.cli_json("accounts", "create", A)
    incoming = daemon.data_dir / "incoming" / A
    complete = incoming / "token-complete"
    complete.mkdir(parents=True)
    roster_zip(complete, "crashed.zip")
    (complete / ".origin").write_text("/crashed.zip")
    partial = incoming / "token-partial"
    partial.mkdir()
    (partial / "half.zip").write_bytes(roster_zip(tmp_path, "full.zip").read_bytes()[:500])
    (partial / ".origin").write_text("/half.zip")
    daemon.start()
    assert wait_until(lambda: count_runs_fast(daemon, A, "crashed.zip") == 1, timeout=20)
    assert wait_until(lambda: (daemon.home(A) / "half.zip").exists(), timeout=10)
    assert count_runs_fast(daemon, A, "half.zip") == 0
    assert wait_until(lambda: not any(incoming.iterdir()), timeout=10)
    assert [r["upload_name"] for r in daemon.runs(A)] == ["crashed.zip"]
