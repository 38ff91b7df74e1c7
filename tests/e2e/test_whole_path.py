"""The whole path with real components at every hop.

OpenSSH's ``sftp`` uploads to the running daemon, which validates, converts and
forwards with paramiko to OpenSSH's ``sshd`` started on loopback by the test.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ONEROSTER_11_VALID, make_keypair, public_key_line, require_tool, zip_folder
from tests.sftp.helpers import sftp_batch

ASM_HEADERS = {
    "students.csv": "person_id,person_number,first_name,middle_name,last_name,grade_level,email_address,"
                    "sis_username,password_policy,location_id",
    "staff.csv": "person_id,person_number,first_name,middle_name,last_name,email_address,sis_username,location_id",
    "courses.csv": "course_id,course_number,course_name,location_id",
    "classes.csv": "class_id,class_number,course_id,instructor_id,instructor_id_2,instructor_id_3,location_id",
    "rosters.csv": "roster_id,class_id,student_id",
    "locations.csv": "location_id,location_name",
}

pytestmark = pytest.mark.e2e


def assert_asm_header(found: str, template: str, name: str) -> None:
    """Apple's template columns in their order; extras only where Apple allows them (asm.md §1.2-1.5)."""
    columns = found.split(",")
    expected = template.split(",")
    assert [c for c in columns if c in expected] == expected, (name, found)
    extras = [c for c in columns if c not in expected]
    assert all(re.fullmatch(r"(location_id|instructor_id)_\d+", c) for c in extras), (name, extras)


@pytest.fixture(scope="module")
def world(tmp_path_factory, sshd_factory):
    require_tool("sftp")
    root = tmp_path_factory.mktemp("whole-path")
    downstream = sshd_factory()
    from tests.conftest import Daemon

    daemon = Daemon(root, flows_toml=downstream.flow_toml("district-a")).start()
    key = make_keypair(root, "tenant_key")
    yield daemon, downstream, key, root
    daemon.stop()
    downstream.stop()


def test_account_create_json_follows_the_contract(world):
    daemon, _, key, _ = world
    created = daemon.cli_json("accounts", "create", "district-a", "--public-key", f"{key}.pub")
    assert created["name"] == created["username"] == "district-a"
    assert (created["host"], created["port"]) == ("localhost", daemon.port)
    assert created["public_keys"] == [public_key_line(key) + " "
                                      + Path(f"{key}.pub").read_text().split()[2]]
    assert len(created["password"]) >= 20
    assert created["host_key_fingerprint"].startswith("SHA256:")
    listed = daemon.cli_json("accounts", "list")
    assert [a["name"] for a in listed] == ["district-a"]
    assert "password" not in daemon.cli_json("accounts", "show", "district-a")


def test_valid_oneroster_upload_is_delivered_as_six_asm_files(world):
    daemon, downstream, key, root = world
    upload = zip_folder(ONEROSTER_11_VALID, root / "roster.zip")
    result = sftp_batch(daemon, "district-a", key=key, commands=f"put {upload}\n")
    assert result.returncode == 0, result.stderr
    runs = daemon.wait_for_runs(1, timeout=30)
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "delivered", daemon.cli("runs", "show", run["id"]).stdout
    assert run["upload_name"] == "roster.zip" and run["input_format"] == "oneroster-1.1"
    assert run["received_at"].endswith("Z") and run["finished_at"].endswith("Z")

    delivered = list(downstream.dropbox.iterdir())
    assert [p.name for p in delivered] == [f"district-a-{run['id']}.zip"]
    with zipfile.ZipFile(delivered[0]) as archive:
        assert sorted(archive.namelist()) == sorted(ASM_HEADERS)
        for name, header in ASM_HEADERS.items():
            assert_asm_header(archive.read(name).decode().splitlines()[0], header, name)
        students = pd.read_csv(io.BytesIO(archive.read("students.csv")), dtype=str, keep_default_na=False)
    users = pd.read_csv(ONEROSTER_11_VALID / "users.csv", dtype=str, keep_default_na=False)
    assert sorted(students["person_id"]) == sorted(users.loc[users["role"] == "student", "sourcedId"])

    shown = daemon.cli_json("runs", "show", run["id"])
    assert [s["name"] for s in shown["steps"]] == ["unpack", "detect", "validate", "convert", "check-output",
                                                  "safeguard",
                                                  "forward"]
    assert all(s["status"] == "ok" for s in shown["steps"])
    # The upload left the tenant's home once its run was recorded.
    assert sorted(p.name for p in daemon.home("district-a").iterdir()) == ["reports"]


def test_upload_without_users_csv_is_rejected_with_a_readable_report(world):
    daemon, downstream, key, root = world
    before = {r["id"] for r in daemon.runs()}
    upload = zip_folder(ONEROSTER_11_VALID, root / "no-users.zip", skip=("users.csv",))
    assert sftp_batch(daemon, "district-a", key=key, commands=f"put {upload}\n").returncode == 0
    runs = daemon.wait_for_runs(len(before) + 1, timeout=30)
    run = next(r for r in runs if r["id"] not in before)
    assert run["status"] == "rejected"
    assert len(list(downstream.dropbox.iterdir())) == 1  # nothing new was forwarded

    fetched = root / "fetched-report.txt"
    result = sftp_batch(daemon, "district-a", key=key, commands=f"get reports/{run['id']}.txt {fetched}\n")
    assert result.returncode == 0, result.stderr
    report = fetched.read_text()
    assert "REJECTED" in report and "users.csv" in report
    issues = daemon.cli_json("runs", "show", run["id"])["issues"]
    assert any(i["severity"] == "error" and "users.csv" in (i["file"] or "") + i["message"] for i in issues)

    # reports/ is read-only for the tenant.
    refused = sftp_batch(daemon, "district-a", key=key, commands=f"put {upload} reports/mine.zip\n")
    assert refused.returncode != 0
    assert not (daemon.home("district-a") / "reports" / "mine.zip").exists()


def test_logs_carry_no_student_data_or_secrets(world):
    daemon, *_ = world
    text = daemon.log.read_text()
    assert "run_finished" in text and "step_finished" in text
    users = pd.read_csv(ONEROSTER_11_VALID / "users.csv", dtype=str, keep_default_na=False)
    for column in ("sourcedId", "givenName", "familyName", "email", "username"):
        for value in users[column]:
            if value:
                assert value not in text, f"{column} value leaked into the log"
