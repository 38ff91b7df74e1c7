"""The defender and the session slots kept in the state store: shared by processes, kept across restarts.

Each "process" here is a store connection of its own on the same data directory, as
each SFTP server process has.
"""

from __future__ import annotations

import pytest

from rostergate import store
from rostergate.sftp.defender import Defender
from rostergate.sftp.settings import DefenderSettings
from rostergate.sftp.slots import SessionSlots


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _defender(data_dir, clock, pid=None, **overrides) -> Defender:
    settings = DefenderSettings(**{"threshold": 10, "ban_seconds": 100, "observation_seconds": 60, **overrides})
    return Defender(settings, clock, data_dir=data_dir, pid=pid)


def test_a_ban_made_in_one_process_refuses_the_source_in_another(tmp_path):
    clock = Clock()
    one, two = _defender(tmp_path, clock), _defender(tmp_path, clock)
    for _ in range(5):
        one.login_failed("10.0.0.1", "ghost", known=False)
    assert two.ban_left("10.0.0.1") == pytest.approx(100)
    assert two.connection_opened("10.0.0.1") is not None
    assert two.connection_opened("10.0.0.2") is None


def test_failures_counted_in_two_processes_add_up(tmp_path):
    clock = Clock()
    one, two = _defender(tmp_path, clock), _defender(tmp_path, clock)
    for _ in range(2):
        one.login_failed("10.0.0.1", "a", known=True)
        two.login_failed("10.0.0.1", "a", known=True)
    assert one.ban_left("10.0.0.1") == 0
    assert one.auth_priority("10.0.0.3", "a") == 1 + 4  # the account's score, from both processes
    for _ in range(3):
        one.login_failed("10.0.0.1", "a", known=True)
        two.login_failed("10.0.0.1", "a", known=True)
    assert one.ban_left("10.0.0.1") > 0 and two.ban_left("10.0.0.1") > 0


def test_bans_and_lengthening_survive_a_restart(tmp_path):
    clock = Clock()
    before = _defender(tmp_path, clock, account_threshold=4)
    for _ in range(10):
        before.login_failed("10.0.0.1", "district-a", known=True)
    assert before.account_locked("district-a")
    clock.now += 101  # the first ban is over
    for _ in range(10):
        before.login_failed("10.0.0.1", "other", known=True)
    before.close()
    after = _defender(tmp_path, clock, account_threshold=4)  # a restarted daemon, a new connection
    assert after.ban_left("10.0.0.1") == pytest.approx(150)  # the second ban: 50 % longer, still in force
    assert after.account_locked("other") and not after.account_locked("district-a")


def test_the_tables_stay_bounded_and_keep_bans(tmp_path):
    clock = Clock()
    d = _defender(tmp_path, clock, max_entries=10, threshold=2)
    d.login_failed("10.1.0.0", "x", known=False)  # banned at once (score 2)
    for i in range(1, 40):
        clock.now += 1
        d.login_failed(f"10.1.0.{i}", "x", known=True)
    count = d._db.execute("SELECT COUNT(*) FROM defender_entries WHERE kind = 'source'").fetchone()[0]
    assert count <= 10
    assert d.ban_left("10.1.0.0") > 0  # banned entries are never the ones dropped


def test_a_disabled_or_safe_listed_defender_bans_nobody(tmp_path):
    clock = Clock()
    off = _defender(tmp_path, clock, enabled=False)
    safe = _defender(tmp_path, clock, safe_list=("10.9.0.0/16",))
    for _ in range(20):
        off.login_failed("10.0.0.1", "a", known=False)
        safe.login_failed("10.9.1.1", "b", known=False)
    assert safe.ban_left("10.0.0.1") == 0 and safe.ban_left("10.9.1.1") == 0


def test_session_slots_hold_across_processes_and_free_with_a_process(tmp_path):
    one = SessionSlots(store.connect(tmp_path), pid=101)
    two = SessionSlots(store.connect(tmp_path), pid=202)
    first = one.take("district-a", 2)
    second = two.take("district-a", 2)
    assert first is not None and second is not None
    assert one.take("district-a", 2) is None and two.take("district-a", 2) is None
    assert two.take("district-b", 2) is not None  # per account
    one.give_back(first)
    third = two.take("district-a", 2)
    assert third is not None and one.open_sessions("district-a") == 2
    assert one.forget_process(202) == 3  # process 202 ended: its slots go with it
    assert one.open_sessions("district-a") == 0 and one.open_sessions("district-b") == 0
    one.take("district-a", 2)
    assert two.clear() == 1 and one.open_sessions("district-a") == 0


def test_connections_per_source_count_across_processes_and_free_with_a_process(tmp_path):
    clock = Clock()
    one = _defender(tmp_path, clock, pid=101, max_connections_per_source=2, threshold=1000)
    two = _defender(tmp_path, clock, pid=202, max_connections_per_source=2, threshold=1000)
    assert one.connection_opened("10.0.0.1") is None and two.connection_opened("10.0.0.1") is None
    assert "too many connections" in (two.connection_opened("10.0.0.1") or "")
    assert "too many connections" in (one.connection_opened("10.0.0.1") or "")
    assert one.connection_opened("10.0.0.2") is None  # per source
    two.connection_closed("10.0.0.1")
    assert one.connection_opened("10.0.0.1") is None  # the slot two gave back
    assert two.connection_opened("10.0.0.1") is not None
    assert SessionSlots(store.connect(tmp_path)).forget_process(101) == 0  # no sessions, but its connections go
    assert two.connection_opened("10.0.0.1") is None and two.connection_opened("10.0.0.1") is None
    assert two.connection_opened("10.0.0.1") is not None
    assert SessionSlots(store.connect(tmp_path)).clear() == 0 and one.connection_opened("10.0.0.1") is None
