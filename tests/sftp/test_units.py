"""Unit tests: defender scoring and bans on a fake clock, settings parsing, the password-check
queue's order."""

from __future__ import annotations

import asyncio
import threading
import tomllib

import pytest

from rostergate.config import ConfigError, parse
from rostergate.sftp.defender import Defender
from rostergate.sftp.hashing import PasswordChecks
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


# -- storage limits: [server.limits] keys of the quota, entries, depth and names ---------------
def test_storage_limit_keys_defaults_and_per_account_override():
    defaults = SftpSettings()
    assert (defaults.max_account_bytes, defaults.max_account_entries, defaults.max_folder_depth,
            defaults.max_name_bytes) == (2 * 1024**3, 10_000, 8, 255)
    settings = parse_sftp_settings({"limits": {
        "max_account_bytes": 1000, "max_account_entries": 7, "max_folder_depth": 2, "max_name_bytes": 40,
        "accounts": {"big": {"max_account_bytes": 5000}, "small": {"max_sessions": 1}},
    }}, "server")
    assert (settings.max_account_entries, settings.max_folder_depth, settings.max_name_bytes) == (7, 2, 40)
    assert settings.account_bytes_limit("big") == 5000
    assert settings.account_bytes_limit("small") == 1000 and settings.account_bytes_limit("other") == 1000
    assert settings.upload_limit("big") == settings.max_upload_bytes  # one override leaves the others


@pytest.mark.parametrize(("limits", "key"), [
    ({"max_account_bytes": 0}, "server.limits.max_account_bytes"),
    ({"max_account_bytes": -1}, "server.limits.max_account_bytes"),
    ({"max_account_bytes": 1.5}, "server.limits.max_account_bytes"),
    ({"max_account_bytes": "2GB"}, "server.limits.max_account_bytes"),
    ({"max_account_entries": 0}, "server.limits.max_account_entries"),
    ({"max_account_entries": True}, "server.limits.max_account_entries"),
    ({"max_folder_depth": 0}, "server.limits.max_folder_depth"),
    ({"max_folder_depth": float("inf")}, "server.limits.max_folder_depth"),
    ({"max_name_bytes": 0}, "server.limits.max_name_bytes"),
    ({"max_name_bytes": 256}, "server.limits.max_name_bytes"),
    ({"accounts": {"big": {"max_account_bytes": 0}}}, "server.limits.accounts.big.max_account_bytes"),
    ({"accounts": {"big": {"max_account_bytes": float("nan")}}}, "server.limits.accounts.big.max_account_bytes"),
    ({"accounts": {"big": {"max_folder_depth": 3}}}, "server.limits.accounts.big.max_folder_depth"),
    ({"accounts": {"big": 5}}, "server.limits.accounts.big"),
])
def test_each_bad_storage_limit_is_refused_naming_its_key(limits, key):
    with pytest.raises(ConfigError) as caught:
        parse({"server": {"limits": limits}})
    assert [problem.split(": ")[0] for problem in caught.value.problems] == [key]


@pytest.mark.parametrize("value", ["nan", "inf", "+inf", "-inf", "-nan"])
@pytest.mark.parametrize("key", ["limits.login_grace_seconds", "limits.idle_timeout_seconds",
                                 "defender.observation_seconds", "defender.ban_seconds",
                                 "defender.failed_password_delay_seconds"])
def test_nan_and_infinity_are_refused_for_every_number(key, value):
    table, name = key.split(".")
    raw = tomllib.loads(f"[server.{table}]\n{name} = {value}\n")
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    assert [problem.split(": ")[0] for problem in caught.value.problems] == [f"server.{key}"]
    assert "finite" in caught.value.problems[0]


def test_several_bad_storage_keys_are_all_named_at_once():
    with pytest.raises(ConfigError) as caught:
        parse(tomllib.loads(
            "[server.limits]\nmax_account_bytes = 0\nmax_folder_depth = -2\nmax_name_bytes = 300\n"
            "max_account_entries = 'many'\nlogin_grace_seconds = nan\n"
            "[server.limits.accounts.x]\nmax_account_bytes = inf\n"
            "[server.defender]\nban_seconds = inf\n"))
    keys = {problem.split(": ")[0] for problem in caught.value.problems}
    assert keys == {"server.limits.max_account_bytes", "server.limits.max_folder_depth",
                    "server.limits.max_name_bytes", "server.limits.max_account_entries",
                    "server.limits.login_grace_seconds", "server.limits.accounts.x.max_account_bytes",
                    "server.defender.ban_seconds"}


# -- password checks: a priority queue on a small pool -------------------------------------------
def test_password_checks_run_trusted_first_and_reorder_after_failures():
    """One worker, held busy: the queued checks then run by priority, equal ones in order."""
    async def scenario() -> list[str]:
        checks = PasswordChecks(workers=1)
        gate, ran = threading.Event(), []

        def check(name):
            def run():
                if name == "blocker":
                    gate.wait(10)
                ran.append(name)
                return name
            return run

        tasks = [asyncio.ensure_future(checks.run(0, check("blocker")))]
        await asyncio.sleep(0.05)  # the worker holds the blocker
        for name, priority, key in (("spray-1", 1, ("10.0.0.1", "a")), ("spray-2", 1, ("10.0.0.2", "a")),
                                    ("clean", 1, ("10.0.0.9", "b")), ("trusted", 0, ("10.0.0.8", "c"))):
            tasks.append(asyncio.ensure_future(checks.run(priority, check(name), key=key)))
        await asyncio.sleep(0.05)
        assert checks.waiting() == 4
        checks.reorder(lambda source, account: 5 if account == "a" else (0 if account == "c" else 1))
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        checks.close()
        assert sorted(results) == sorted(["blocker", "spray-1", "spray-2", "clean", "trusted"])
        return ran

    assert asyncio.run(scenario()) == ["blocker", "trusted", "clean", "spray-1", "spray-2"]


def test_password_check_whose_client_left_is_dropped_unhashed():
    async def scenario() -> list[str]:
        checks = PasswordChecks(workers=1)
        gate, ran = threading.Event(), []
        blocker = asyncio.ensure_future(checks.run(0, lambda: gate.wait(10) and ran.append("blocker")))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(checks.run(1, lambda: ran.append("gone")))
        kept = asyncio.ensure_future(checks.run(1, lambda: ran.append("kept")))
        await asyncio.sleep(0.05)
        gone.cancel()
        await asyncio.sleep(0.05)  # the cancellation reaches the queued check through the event loop
        assert checks.waiting() == 2
        gate.set()
        await asyncio.wait_for(asyncio.gather(blocker, kept), 10)
        checks.close()
        return ran

    assert asyncio.run(scenario()) == ["blocker", "kept"]


def test_password_pool_size_follows_cores_and_lanes(monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert PasswordChecks(lanes=4).workers == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert PasswordChecks(lanes=4).workers == 1 and PasswordChecks(workers=3).workers == 3


def test_auth_priority_trusted_then_clean_then_by_score():
    d, clock = defender(observation_seconds=60, threshold=1000, account_threshold=1000)
    d.login_succeeded("10.0.0.8", "c")
    assert d.auth_priority("10.0.0.8", "c") == 0
    assert d.auth_priority("10.0.0.9", "c") == 1  # the same account from a new source is only clean
    d.login_failed("10.0.0.1", "a", known=True)
    d.login_failed("10.0.0.1", "a", known=True)
    assert d.auth_priority("10.0.0.1", "a") == 1 + 2 + 2  # the source's and the account's scores
    assert d.auth_priority("10.0.0.1", "b") == 1 + 2 and d.auth_priority("10.0.0.2", "b") == 1
    clock.now += 61
    assert d.auth_priority("10.0.0.8", "c") == 1 and d.auth_priority("10.0.0.1", "a") == 1


def test_a_dead_process_s_staged_uploads_are_told_apart_and_handed_over_alone(tmp_path):
    """ServerState.stage names each staging folder by the staging process, so the daemon recovers a dead
    process's uploads (staged_by, recover) without touching another process's."""
    import os

    from rostergate.sftp.files import ServerState

    homes = tmp_path / "homes"
    (homes / "district-a").mkdir(parents=True)
    handed: list[str] = []

    async def on_upload(account: str, path) -> None:
        handed.append(f"{account}/{path.name}")
        path.unlink()  # taken by the intake

    async def scenario() -> tuple[list, list]:
        state = ServerState(SftpSettings(), tmp_path / "var", homes, on_upload)
        (homes / "district-a" / "mine.zip").write_bytes(b"x" * 10)
        staged = state.stage("district-a", os.fsencode(str(homes / "district-a" / "mine.zip")), "mine.zip")
        assert staged is not None and (staged.parent / ".origin").read_text() == "mine.zip"
        other = state.incoming / "district-a" / "4242-feed"  # another process's, still in its hands
        other.mkdir()
        (other / ".origin").write_text("theirs.zip")
        (other / "theirs.zip").write_bytes(b"y" * 10)
        mine = state.staged_by(os.getpid())
        assert state.staged_by(4242) == [other] and mine == [staged.parent]
        assert state.recover(mine) == 1
        await asyncio.gather(*state.tasks)
        return mine, sorted(p.name for p in (state.incoming / "district-a").iterdir())

    mine, left = asyncio.run(scenario())
    assert handed == ["district-a/mine.zip"] and not mine[0].exists() and left == ["4242-feed"]
