"""Unit tests: defender scoring and bans on a fake clock, settings parsing, upload names."""

from __future__ import annotations

import pytest

from rostergate.config import ConfigError, parse
from rostergate.sftp.defender import Defender
from rostergate.uploadnames import is_upload_name
from rostergate.sftp.settings import DefenderSettings, SftpSettings, parse_sftp_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def defender(**overrides) -> tuple[Defender, Clock]:
    clock = Clock()
    return Defender(DefenderSettings(**{"threshold": 15, "ban_seconds": 100, **overrides}), clock), clock


def test_unknown_users_score_double_and_ban_at_the_threshold():
    d, _ = defender()
    for _ in range(7):
        d.login_failed("10.0.0.1", "ghost", known=False)
    assert d.ban_left("10.0.0.1") == 0
    d.login_failed("10.0.0.1", "ghost", known=False)
    assert d.ban_left("10.0.0.1") == pytest.approx(100)
    assert d.connection_opened("10.0.0.1") is not None
    assert d.connection_opened("10.0.0.2") is None


def test_repeat_offenders_get_longer_bans_and_scores_expire():
    d, clock = defender(ban_increment_percent=50, observation_seconds=60)
    for _ in range(15):
        d.login_failed("10.0.0.1", "a", known=True)
    assert d.ban_left("10.0.0.1") == pytest.approx(100)
    clock.now += 101
    for _ in range(15):
        d.login_failed("10.0.0.1", "a", known=True)
    assert d.ban_left("10.0.0.1") == pytest.approx(150)
    clock.now += 151
    for _ in range(14):
        d.login_failed("10.0.0.1", "a", known=True)
        clock.now += 5  # spread over 70 s: older failures leave the window
    assert d.ban_left("10.0.0.1") == 0


def test_account_lock_and_safe_list_and_connection_cap():
    d, _ = defender(account_threshold=4, safe_list=("10.9.0.0/16",), max_connections_per_source=2)
    for source in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"):
        d.login_failed(source, "district-a", known=True)
    assert d.account_locked("district-a") and not d.account_locked("district-b")
    for _ in range(40):
        d.login_failed("10.9.1.1", "x", known=False)
    assert d.ban_left("10.9.1.1") == 0
    assert d.connection_opened("10.0.0.9") is None and d.connection_opened("10.0.0.9") is None
    assert "too many connections" in (d.connection_opened("10.0.0.9") or "")
    d.connection_closed("10.0.0.9")
    assert d.connection_opened("10.0.0.9") is None


def test_disabled_defender_never_bans():
    d, _ = defender(enabled=False)
    for _ in range(100):
        d.login_failed("10.0.0.1", "x", known=False)
    assert d.ban_left("10.0.0.1") == 0 and d.connection_opened("10.0.0.1") is None


def test_settings_defaults_and_overrides():
    assert parse_sftp_settings({}, "server") == SftpSettings()
    settings = parse_sftp_settings({
        "limits": {"max_upload_bytes": 10, "accounts": {"big": {"max_upload_bytes": 99, "max_sessions": 1}}},
        "defender": {"ban_seconds": 5, "safe_list": ["127.0.0.0/8"]},
        "algorithms": {"rsa_host_key": True, "ciphers": ["aes256-gcm@openssh.com"]},
    }, "server")
    assert settings.upload_limit("big") == 99 and settings.upload_limit("other") == 10
    assert settings.session_limit("big") == 1 and settings.session_limit("other") == 8
    assert settings.defender.ban_seconds == 5.0 and settings.algorithms.rsa_host_key
    assert settings.algorithms.ciphers == ("aes256-gcm@openssh.com",)


def test_every_bad_key_is_named():
    with pytest.raises(ConfigError) as caught:
        parse({"server": {
            "limits": {"max_upload_bytes": 0, "max_packet_bytes": 100, "typo": 1},
            "defender": {"threshold": "high", "enabled": "yes", "safe_list": ["not-an-ip"]},
            "algorithms": {"ciphers": ["aes128-cbc"], "macs": ["hmac-sha1"], "kex": ["diffie-hellman-group1-sha1"]},
        }})
    keys = {problem.split(":")[0] for problem in caught.value.problems}
    assert keys == {
        "server.limits.max_upload_bytes", "server.limits.max_packet_bytes", "server.limits.typo",
        "server.defender.threshold", "server.defender.enabled", "server.defender.safe_list",
        "server.algorithms.ciphers", "server.algorithms.macs", "server.algorithms.kex",
    }


@pytest.mark.parametrize(("name", "expected"), [
    ("/roster.zip", True), ("/sub/Roster.ZIP", True), ("/roster.zip.filepart", False),
    ("/roster.zip.a1b2.partial", False), ("/.in.roster.zip", False), ("/reports/x.zip", False),
    ("/notes.txt", False),
])
def test_upload_names(name, expected):
    assert is_upload_name(name) is expected
