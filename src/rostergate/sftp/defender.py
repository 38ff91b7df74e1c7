"""Brute-force defence, modelled on SFTPGo's defender and OpenSSH's PerSourcePenalties.

Every failed login adds to a score kept per source address and per account name
(``score_known_user`` for an existing account, ``score_unknown_user`` for a name
that does not exist, ``score_limit_exceeded`` when a connection uses up its
``max_auth_attempts``). Scores older than ``observation_seconds`` drop out.

* A source whose score reaches ``threshold`` is banned for ``ban_seconds``; each
  further ban of the same source lasts ``ban_increment_percent`` longer than the
  one before. Banned sources are disconnected as soon as they connect.
* An account name whose score reaches ``account_threshold`` (guessing spread over
  many sources) has its **password** logins refused for ``ban_seconds``; its
  public keys keep working, so the tenant is not locked out by an attacker.
* Sources on ``safe_list`` are never banned.
* :meth:`Defender.auth_priority` orders password checks (argon2 work, see
  :mod:`rostergate.sftp.hashing`): an account logging in from a source it
  logged in from before (within ``observation_seconds``) goes first, then clean
  sources and names, then those with recent failures, by their scores. A
  password spray therefore queues behind the districts that log in every day.

The state is in memory and bounded (``max_entries`` per table, oldest unbanned
entries dropped first). Nothing here ever sees a password.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from rostergate import metrics
from rostergate.sftp.settings import DefenderSettings

log = structlog.get_logger("rostergate.sftp.defender")


@dataclass
class _Entry:
    events: deque[tuple[float, int]] = field(default_factory=deque)  # (time, score)
    banned_until: float = 0.0
    bans: int = 0
    last_seen: float = 0.0

    def score(self, now: float, window: float) -> int:
        while self.events and self.events[0][0] < now - window:
            self.events.popleft()
        return sum(score for _, score in self.events)


class Defender:
    """Scores, bans and connection counts; all methods are cheap and synchronous."""

    def __init__(self, settings: DefenderSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self._clock = clock
        self._hosts: dict[str, _Entry] = {}
        self._accounts: dict[str, _Entry] = {}
        self._connections: dict[str, int] = {}
        self._trusted: dict[tuple[str, str], float] = {}  # (source, account) -> last successful login
        self._safe = [ipaddress.ip_network(net, strict=False) for net in settings.safe_list]

    # -- queries -------------------------------------------------------------------
    def ban_left(self, host: str) -> float:
        """Seconds left of the source's ban (0 when not banned)."""
        entry = self._hosts.get(host)
        if not self.settings.enabled or entry is None:
            return 0.0
        return max(0.0, entry.banned_until - self._clock())

    def account_locked(self, account: str) -> bool:
        entry = self._accounts.get(account)
        return bool(self.settings.enabled and entry and entry.banned_until > self._clock())

    def auth_priority(self, host: str, account: str) -> int:
        """Queue position class of a password check: 0 first; higher waits behind lower."""
        now = self._clock()
        last = self._trusted.get((host, account))
        if last is not None and last >= now - self.settings.observation_seconds:
            return 0
        window = self.settings.observation_seconds
        score = sum(entry.score(now, window) for entry in (self._hosts.get(host), self._accounts.get(account))
                    if entry is not None)
        return 1 + score

    def login_succeeded(self, host: str, account: str) -> None:
        """Remember a successful login (bounded like the other tables)."""
        trusted, now = self._trusted, self._clock()
        if (host, account) not in trusted and len(trusted) >= self.settings.max_entries:
            oldest = sorted(trusted.items(), key=lambda item: item[1])[: max(1, len(trusted) // 10)]
            for key, _ in oldest:
                del trusted[key]
        trusted[(host, account)] = now

    def is_safe(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._safe)

    # -- connections ---------------------------------------------------------------
    def connection_opened(self, host: str) -> str | None:
        """Count a new connection; returns why it must be refused, or None."""
        left = self.ban_left(host)
        if left > 0:
            return f"too many failed logins from {host}: try again in {int(left) + 1} s"
        count = self._connections.get(host, 0)
        if self.settings.enabled and count >= self.settings.max_connections_per_source and not self.is_safe(host):
            self.limit_exceeded(host)
            return f"too many connections from {host} (at most {self.settings.max_connections_per_source})"
        self._connections[host] = count + 1
        return None

    def connection_closed(self, host: str) -> None:
        count = self._connections.get(host, 0) - 1
        if count > 0:
            self._connections[host] = count
        else:
            self._connections.pop(host, None)

    # -- scoring -------------------------------------------------------------------
    def login_failed(self, host: str, account: str, known: bool) -> None:
        s = self.settings
        self._add_host(host, s.score_known_user if known else s.score_unknown_user)
        self._add_account(account, s.score_known_user if known else s.score_unknown_user)

    def limit_exceeded(self, host: str) -> None:
        self._add_host(host, self.settings.score_limit_exceeded)

    def _add_host(self, host: str, score: int) -> None:
        if not self.settings.enabled or self.is_safe(host):
            return
        entry, now = self._entry(self._hosts, host), self._clock()
        if entry.banned_until > now:
            return
        entry.events.append((now, score))
        if entry.score(now, self.settings.observation_seconds) >= self.settings.threshold:
            duration = self._ban(entry, now)
            log.warning("source_banned", remote=host, seconds=round(duration), bans=entry.bans)
            metrics.BANS.labels("source").inc()

    def _add_account(self, account: str, score: int) -> None:
        if not self.settings.enabled:
            return
        entry, now = self._entry(self._accounts, account), self._clock()
        if entry.banned_until > now:
            return
        entry.events.append((now, score))
        if entry.score(now, self.settings.observation_seconds) >= self.settings.account_threshold:
            duration = self._ban(entry, now)
            log.warning("account_password_locked", account=account, seconds=round(duration), bans=entry.bans)
            metrics.BANS.labels("account").inc()

    def _ban(self, entry: _Entry, now: float) -> float:
        growth = (1 + self.settings.ban_increment_percent / 100) ** entry.bans
        duration = self.settings.ban_seconds * growth
        entry.banned_until = now + duration
        entry.bans += 1
        entry.events.clear()
        return duration

    def _entry(self, table: dict[str, _Entry], key: str) -> _Entry:
        entry = table.get(key)
        now = self._clock()
        if entry is None:
            if len(table) >= self.settings.max_entries:
                self._evict(table, now)
            entry = table[key] = _Entry()
        entry.last_seen = now
        return entry

    def _evict(self, table: dict[str, _Entry], now: float) -> None:
        idle = sorted((e.last_seen, k) for k, e in table.items() if e.banned_until <= now)
        for _, key in idle[: max(1, len(table) // 10)]:
            del table[key]
