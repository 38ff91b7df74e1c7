"""Roster safety end to end: a big drop is held; operators approve, reject and diff."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FIXTURES, ONEROSTER_11_VALID, Daemon, make_keypair, require_tool, zip_folder
from tests.sftp.helpers import sftp_batch

pytestmark = pytest.mark.e2e
ASM_VALID = FIXTURES / "asm-valid"


def upload(daemon: Daemon, key: Path, local: Path, account: str = "district-a") -> None:
    result = sftp_batch(daemon, account, f"put {local}\n", key=key)
    assert result.returncode == 0, result.stderr


def wait_status(daemon: Daemon, run_id: str, status: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = next(r for r in daemon.runs() if r["id"] == run_id)
        if run["status"] == status:
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not become {status}: {run}")


def without_students(root: Path, keep: int, name: str) -> Path:
    """The valid fixture with all but ``keep`` students (and their enrollments) removed."""
    folder = root / name
    shutil.copytree(ONEROSTER_11_VALID, folder)
    users = pd.read_csv(folder / "users.csv", dtype=str, keep_default_na=False)
    students = users.loc[users["role"] == "student", "sourcedId"]
    dropped = set(students.iloc[keep:])
    users[~users["sourcedId"].isin(dropped)].to_csv(folder / "users.csv", index=False)
    enrollments = pd.read_csv(folder / "enrollments.csv", dtype=str, keep_default_na=False)
    enrollments[~enrollments["userSourcedId"].isin(dropped)].to_csv(folder / "enrollments.csv", index=False)
    return zip_folder(folder, root / f"{name}.zip")


def test_big_drop_is_held_until_an_operator_decides(tmp_path):
    require_tool("sftp")
    outbox = tmp_path / "outbox"
    flows = (f'[[flows]]\naccount = "district-a"\n[flows.downstream]\nurl = "{outbox.as_uri()}"\n'
             "[flows.safeguards]\nmax_removed_percent = 30\nmin_previous_rows = 0\n")
    daemon = Daemon(tmp_path, flows_toml=flows).start()
    key = make_keypair(tmp_path)
    daemon.cli("accounts", "create", "district-a", "--public-key", f"{key}.pub", "--no-password")

    upload(daemon, key, zip_folder(ONEROSTER_11_VALID, tmp_path / "full.zip"))
    first = daemon.wait_for_runs(1)[0]
    assert first["status"] == "delivered"

    upload(daemon, key, without_students(tmp_path, keep=1, name="partial"))
    second = next(r for r in daemon.wait_for_runs(2) if r["id"] != first["id"])
    assert second["status"] == "held"
    assert len(list(outbox.iterdir())) == 1  # nothing more was delivered
    report = (daemon.home("district-a") / "reports" / f"{second['id']}.txt").read_text()
    assert "HELD" in report and "students.csv would lose 2 of 3 rows" in report
    changes = daemon.cli_json("runs", "diff", second["id"])
    assert changes["files"]["students.csv"]["removed"] == 2
    assert changes["files"]["rosters.csv"]["removed"] == 2
    assert "students.csv" in daemon.cli("runs", "diff", second["id"]).stdout

    daemon.cli("runs", "approve", second["id"])
    wait_status(daemon, second["id"], "delivered")
    assert len(list(outbox.iterdir())) == 2

    upload(daemon, key, without_students(tmp_path, keep=0, name="empty"))
    third = next(r for r in daemon.wait_for_runs(3) if r["id"] not in (first["id"], second["id"]))
    assert third["status"] == "held"
    daemon.cli("runs", "reject", third["id"])
    assert wait_status(daemon, third["id"], "discarded")["finished_at"]
    refused = daemon.cli("runs", "approve", third["id"], check=False)
    assert refused.returncode == 1 and "only held runs" in refused.stderr
    assert len(list(outbox.iterdir())) == 2
    daemon.stop()


def test_a_first_delivery_of_header_only_asm_files_is_held(tmp_path):
    """asm.md §2.3, §2.5: six header-only files would tell Apple that every person left. The
    validator only warns (the files are well formed), there is no previous delivery to compare
    with, and the run is held all the same, until an operator decides."""
    require_tool("sftp")
    outbox = tmp_path / "outbox"
    flows = f'[[flows]]\naccount = "district-a"\n[flows.downstream]\nurl = "{outbox.as_uri()}"\n'
    daemon = Daemon(tmp_path, flows_toml=flows).start()
    key = make_keypair(tmp_path)
    daemon.cli("accounts", "create", "district-a", "--public-key", f"{key}.pub", "--no-password")
    empty = tmp_path / "empty"
    empty.mkdir()
    for source in sorted(ASM_VALID.iterdir()):
        (empty / source.name).write_text(source.read_text().splitlines()[0] + "\n")

    upload(daemon, key, zip_folder(empty, tmp_path / "empty.zip"))
    (run,) = daemon.wait_for_runs(1)
    assert run["status"] == "held"
    assert not outbox.exists() or not list(outbox.iterdir())  # nothing went to Apple
    report = (daemon.home("district-a") / "reports" / f"{run['id']}.txt").read_text()
    assert "HELD" in report
    for name in ("students.csv", "staff.csv", "rosters.csv"):
        assert f"{name} would be delivered with no rows in the account's first delivery" in report
    assert "the file has a header but no rows" in report  # the validation's warnings are in the report too
    daemon.cli("runs", "reject", run["id"])
    assert wait_status(daemon, run["id"], "discarded")["finished_at"]
