"""What `check-config` and `serve` check beyond the configuration's own parse."""

from __future__ import annotations

import base64

from rostergate import checks, config


def _sftp(raw_server: dict):
    return config.parse({"server": raw_server}).server.sftp


def test_a_key_exchange_list_this_installation_cannot_serve_is_named(monkeypatch):
    """The names are checked at load; what asyncssh offers of them, here (they depend on the installation)."""
    settings = _sftp({"algorithms": {"kex": ["curve25519-sha256"]}})
    assert checks.sftp_algorithms(settings) == []
    assert checks.sftp_algorithms(_sftp({})) == []
    monkeypatch.setattr(checks, "available_kex", lambda: {"diffie-hellman-group14-sha256"})
    assert checks.sftp_algorithms(settings) == [
        "server.algorithms.kex: none of these key exchanges is available in this installation"]


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def test_a_pinned_host_key_paramiko_cannot_use_is_named(tmp_path):
    """Well formed (the configuration loads) but no point of the curve: the full parse refuses it."""
    key = tmp_path / "k"
    key.write_text("x")
    key.chmod(0o600)
    blob = _string(b"ecdsa-sha2-nistp256") + _string(b"nistp256") + _string(b"\x04" + bytes(64))
    flow = config.parse({"flows": [{"account": "a", "downstream": {
        "url": "sftp://u@h/x", "key_file": str(key),
        "host_key": f"ecdsa-sha2-nistp256 {base64.b64encode(blob).decode()}",
    }}]}, base=tmp_path).flows[0]
    problems = checks.flow_problems(flow, "flows[0]")
    assert len(problems) == 1 and problems[0].startswith("flows[0].downstream.host_key: not a usable")
