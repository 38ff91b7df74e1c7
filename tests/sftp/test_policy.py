"""Algorithm policy: weak algorithms are refused by real clients; ssh-audit finds nothing failing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Daemon, local_flow, make_keypair, require_tool
from tests.sftp.helpers import SSH_OPTS

A = "district-a"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftp-policy")
    daemon = Daemon(root, local_flow(A, root / "outbox"), "[server.algorithms]\nrsa_host_key = true\n").start()
    key = make_keypair(root, "tenant_key")
    daemon.cli_json("accounts", "create", A, "--public-key", f"{key}.pub", "--no-password")
    yield {"daemon": daemon, "key": key}
    daemon.stop()


def ssh(world, *options: str, command: str = "") -> subprocess.CompletedProcess:
    require_tool("ssh")
    args = ["ssh", "-p", str(world["daemon"].port), "-i", str(world["key"]), *SSH_OPTS, "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", *options, f"{A}@127.0.0.1"]
    if command:
        args.append(command)
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


def sftp_ls(world, *options: str) -> subprocess.CompletedProcess:
    require_tool("sftp")
    opts = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=INFO"]
    args = ["sftp", "-P", str(world["daemon"].port), "-i", str(world["key"]), *opts, "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", *options, "-b", "-", f"{A}@127.0.0.1"]
    return subprocess.run(args, input="ls\n", capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("option", [
    "Ciphers=aes128-cbc",
    "Ciphers=3des-cbc",
    "KexAlgorithms=diffie-hellman-group14-sha1",
    "KexAlgorithms=diffie-hellman-group-exchange-sha1",
    "KexAlgorithms=diffie-hellman-group-exchange-sha256",
    "Ciphers=aes128-ctr MACs=hmac-sha1",  # with an AEAD cipher no MAC is negotiated at all
    "HostKeyAlgorithms=ssh-rsa",
])
def test_weak_algorithm_is_refused(world, option):
    result = sftp_ls(world, *[arg for part in option.split() for arg in ("-o", part)])
    assert result.returncode != 0
    assert "no matching" in result.stderr.lower(), result.stderr


@pytest.mark.parametrize("option", [
    "KexAlgorithms=mlkem768x25519-sha256",
    "KexAlgorithms=curve25519-sha256",
    "Ciphers=aes128-gcm@openssh.com",
    "Ciphers=aes256-ctr",
    "HostKeyAlgorithms=rsa-sha2-512",
])
def test_strong_algorithm_works(world, option):
    result = sftp_ls(world, "-o", option)
    if option.startswith("KexAlgorithms=mlkem") and "Bad SSH2 KexAlgorithms" in result.stderr:
        pytest.skip("this OpenSSH client has no ML-KEM key exchange")
    assert result.returncode == 0, result.stderr


def test_shell_exec_and_forwarding_are_refused(world):
    assert ssh(world, command="id").returncode != 0
    result = ssh(world, "-N", "-o", "ExitOnForwardFailure=yes", "-L", "127.0.0.1:0:127.0.0.1:22")
    assert result.returncode != 0


def test_ssh_audit_reports_no_failing_algorithm(world):
    audit = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "ssh-audit"
    tool = str(audit) if audit.exists() else shutil.which("ssh-audit")
    if tool is None:
        require_tool("ssh-audit")
    result = subprocess.run([tool, "-j", "--skip-rate-test", "-p", str(world["daemon"].port), "127.0.0.1"],
                            capture_output=True, text=True, timeout=120)
    report = json.loads(result.stdout)
    failing = [(section, item["algorithm"], item["notes"]["fail"])
               for section in ("kex", "key", "enc", "mac") for item in report.get(section, [])
               if item.get("notes", {}).get("fail")]
    assert failing == []
    names = {item["algorithm"] for item in report["kex"]}
    assert "mlkem768x25519-sha256" in names and "kex-strict-s-v00@openssh.com" in names
    assert {item["algorithm"] for item in report["key"]} == {"ssh-ed25519", "rsa-sha2-256", "rsa-sha2-512"}
    assert not [c for c in report.get("cves", [])], report.get("cves")
    assert "AsyncSSH" not in report["banner"]["raw"]
