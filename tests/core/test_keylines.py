"""A pinned host key's shape, checked when the configuration loads (without paramiko)."""

from __future__ import annotations

import base64
import subprocess

import pytest

from rostergate.keylines import check_key_line
from rostergate.sshkeys import parse_host_key

KINDS = [("ed25519", None), ("ecdsa", "256"), ("ecdsa", "384"), ("ecdsa", "521"), ("rsa", "2048")]


@pytest.fixture(scope="module")
def key_lines(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("keys")
    lines = []
    for kind, bits in KINDS:
        path = folder / f"{kind}{bits or ''}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *(["-b", bits] if bits else []), "-N", "", "-f", str(path)],
                       check=True)
        lines.append((folder / f"{path.name}.pub").read_text().strip())
    return lines


def test_every_key_paramiko_takes_is_accepted(key_lines):
    for line in key_lines:
        check_key_line(line)
        parse_host_key(line)  # the forwarder's parse agrees


def test_damaged_or_mislabelled_keys_are_refused(key_lines):
    for line in key_lines:
        kind, data = line.split()[:2]
        blob = base64.b64decode(data)
        for damaged in (blob[:-1], blob + b"\0", blob[:12]):
            with pytest.raises(ValueError):
                check_key_line(f"{kind} {base64.b64encode(damaged).decode()}")
        other = "ssh-rsa" if kind != "ssh-rsa" else "ssh-ed25519"
        with pytest.raises(ValueError, match="not of the type"):
            check_key_line(f"{other} {data}")
    for text in ("", "ssh-ed25519", "ssh-ed25519 AAAA", "ssh-ed25519 not-base64!", "ssh-dss AAAAB3NzaC1kc3M="):
        with pytest.raises(ValueError):
            check_key_line(text)
