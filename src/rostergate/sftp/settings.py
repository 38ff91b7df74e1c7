"""Typed settings of the SFTP server: limits, brute-force defence, algorithms.

Parsed from the ``[server]`` table's sub-tables (``[server.limits]``,
``[server.defender]``, ``[server.algorithms]``); every error names its key,
e.g. ``server.limits.max_upload_bytes: must be a whole number >= 1``.

```toml
[server.limits]
max_upload_bytes = 536870912        # per file, per account (overridable below)
max_sessions_per_account = 8        # concurrent SFTP sessions of one account
login_grace_seconds = 30            # time to authenticate after connecting
idle_timeout_seconds = 600          # no SFTP request for this long closes the connection
max_open_handles = 64               # files + folders open at once in one session
max_packet_bytes = 262144           # largest inbound SFTP packet (OpenSSH: 256 KiB)
max_account_bytes = 2147483648      # all bytes stored in a home (files by extent, 4 KiB per folder)
max_account_entries = 10000         # files + folders in a home
max_folder_depth = 8                # levels of folders a tenant may make
max_name_bytes = 255                # per file or folder name (control characters never allowed)
[server.limits.accounts."district-a"]
max_upload_bytes = 2147483648
max_sessions = 2
max_account_bytes = 8589934592

[server.defender]
enabled = true
threshold = 15                      # score that bans a source address
account_threshold = 30              # score that locks an account's password logins
observation_seconds = 1800
ban_seconds = 1800
ban_increment_percent = 50          # each ban of a repeat offender is this much longer
score_known_user = 1
score_unknown_user = 2
score_limit_exceeded = 3
failed_password_delay_seconds = 1.0
max_auth_attempts = 6
max_connections_per_source = 20
max_entries = 10000
safe_list = ["10.0.0.0/8"]          # sources never banned

[server.algorithms]
rsa_host_key = false                # also offer an RSA (rsa-sha2-256/512) host key for old clients
rsa_host_key_path = "var/ssh_host_rsa_key"
kex = [...]                         # optional: a subset of rostergate.sftp.algorithm_names.SAFE_KEX
ciphers = [...]
macs = [...]
```
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rostergate.errors import ConfigError
from rostergate.sftp.algorithm_names import SAFE_CIPHERS, SAFE_KEX, SAFE_MACS, AlgorithmSettings


@dataclass(frozen=True)
class AccountLimits:
    """Per-account overrides of the global limits (None: use the global value)."""

    max_upload_bytes: int | None = None
    max_sessions: int | None = None
    max_account_bytes: int | None = None


@dataclass(frozen=True)
class DefenderSettings:
    enabled: bool = True
    threshold: int = 15
    account_threshold: int = 30
    observation_seconds: float = 1800.0
    ban_seconds: float = 1800.0
    ban_increment_percent: int = 50
    score_known_user: int = 1
    score_unknown_user: int = 2
    score_limit_exceeded: int = 3
    failed_password_delay_seconds: float = 1.0
    max_auth_attempts: int = 6
    max_connections_per_source: int = 20
    max_entries: int = 10000
    safe_list: tuple[str, ...] = ()


@dataclass(frozen=True)
class SftpSettings:
    max_upload_bytes: int = 512 * 1024 * 1024
    max_sessions_per_account: int = 8
    login_grace_seconds: float = 30.0
    idle_timeout_seconds: float = 600.0
    max_open_handles: int = 64
    max_packet_bytes: int = 256 * 1024
    max_account_bytes: int = 2 * 1024 * 1024 * 1024
    max_account_entries: int = 10_000
    max_folder_depth: int = 8
    max_name_bytes: int = 255
    accounts: dict[str, AccountLimits] = field(default_factory=dict)
    defender: DefenderSettings = field(default_factory=DefenderSettings)
    algorithms: AlgorithmSettings = field(default_factory=AlgorithmSettings)

    def upload_limit(self, account: str) -> int:
        override = self.accounts.get(account)
        if override and override.max_upload_bytes is not None:
            return override.max_upload_bytes
        return self.max_upload_bytes

    def account_bytes_limit(self, account: str) -> int:
        override = self.accounts.get(account)
        if override and override.max_account_bytes is not None:
            return override.max_account_bytes
        return self.max_account_bytes

    def session_limit(self, account: str) -> int:
        override = self.accounts.get(account)
        if override and override.max_sessions is not None:
            return override.max_sessions
        return self.max_sessions_per_account


# Smallest packet cap that still lets every common client send its 32 KiB writes.
MIN_PACKET_BYTES = 34 * 1024


class _Reader:
    """Reads typed values from one TOML table, collecting ``key: reason`` problems."""

    def __init__(self, table: dict[str, object], prefix: str, problems: list[str]):
        self.table, self.prefix, self.problems = table, prefix, problems

    def bad(self, key: str, reason: str) -> None:
        self.problems.append(f"{self.prefix}.{key}: {reason}")

    def unknown(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                self.bad(key, f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def integer(self, key: str, default: int | None, minimum: int = 0) -> int | None:
        value = self.table.get(key, default)
        if value is default:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.bad(key, f"must be a whole number >= {minimum}, got {value!r}")
            return default
        return value

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < minimum:
            self.bad(key, f"must be a finite number >= {minimum:g}, got {value!r}")
            return default
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            self.bad(key, f"must be true or false, got {value!r}")
            return default
        return value

    def strings(self, key: str) -> tuple[str, ...] | None:
        if key not in self.table:
            return None
        value = self.table[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            self.bad(key, f"must be a non-empty list of strings, got {value!r}")
            return None
        return tuple(value)

    def sub(self, key: str) -> _Reader:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            self.bad(key, "must be a table")
            value = {}
        return _Reader(value, f"{self.prefix}.{key}", self.problems)


def parse_sftp_settings(server_table: object, prefix: str) -> SftpSettings:
    """Build :class:`SftpSettings` from the ``[server]`` table (raises ConfigError naming keys)."""
    problems: list[str] = []
    server = _Reader(server_table if isinstance(server_table, dict) else {}, prefix, problems)
    limits = _parse_limits(server.sub("limits"))
    defender = _parse_defender(server.sub("defender"))
    algorithms = _parse_algorithms(server.sub("algorithms"))
    if problems:
        raise ConfigError(problems)
    return SftpSettings(**limits, defender=defender, algorithms=algorithms)


def _parse_limits(r: _Reader) -> dict[str, Any]:
    base = SftpSettings()
    r.unknown({"max_upload_bytes", "max_sessions_per_account", "login_grace_seconds", "idle_timeout_seconds",
               "max_open_handles", "max_packet_bytes", "max_account_bytes", "max_account_entries",
               "max_folder_depth", "max_name_bytes", "accounts"})
    values: dict[str, Any] = {
        "max_upload_bytes": r.integer("max_upload_bytes", base.max_upload_bytes, 1),
        "max_sessions_per_account": r.integer("max_sessions_per_account", base.max_sessions_per_account, 1),
        "login_grace_seconds": r.number("login_grace_seconds", base.login_grace_seconds, 1),
        "idle_timeout_seconds": r.number("idle_timeout_seconds", base.idle_timeout_seconds, 1),
        "max_open_handles": r.integer("max_open_handles", base.max_open_handles, 1),
        "max_packet_bytes": r.integer("max_packet_bytes", base.max_packet_bytes, MIN_PACKET_BYTES),
        "max_account_bytes": r.integer("max_account_bytes", base.max_account_bytes, 1),
        "max_account_entries": r.integer("max_account_entries", base.max_account_entries, 1),
        "max_folder_depth": r.integer("max_folder_depth", base.max_folder_depth, 1),
        "max_name_bytes": r.integer("max_name_bytes", base.max_name_bytes, 1),
    }
    if values["max_name_bytes"] > 255:
        r.bad("max_name_bytes", "must be at most 255 (the longest name Linux file systems store)")
        values["max_name_bytes"] = base.max_name_bytes
    if values["max_packet_bytes"] > 4 * 1024 * 1024 + 1024:
        r.bad("max_packet_bytes", "must be at most 4195328 (4 MiB + 1 KiB)")
        values["max_packet_bytes"] = base.max_packet_bytes
    accounts: dict[str, AccountLimits] = {}
    table = r.sub("accounts")
    for name, raw in table.table.items():
        one = table.sub(name)
        if not isinstance(raw, dict):
            continue
        one.unknown({"max_upload_bytes", "max_sessions", "max_account_bytes"})
        accounts[name] = AccountLimits(one.integer("max_upload_bytes", None, 1), one.integer("max_sessions", None, 1),
                                       one.integer("max_account_bytes", None, 1))
    values["accounts"] = accounts
    return values


def _parse_defender(r: _Reader) -> DefenderSettings:
    base = DefenderSettings()
    names = {f.name for f in fields(DefenderSettings)}
    r.unknown(names)
    values: dict[str, Any] = {}
    for f in fields(DefenderSettings):
        default = getattr(base, f.name)
        if f.name == "enabled":
            values[f.name] = r.boolean(f.name, default)
        elif f.name == "safe_list":
            values[f.name] = r.strings(f.name) or ()
            for entry in values[f.name]:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    r.bad(f.name, f"{entry!r} is not an IP address or CIDR network")
        elif isinstance(default, float):
            values[f.name] = r.number(f.name, default, 0)
        else:
            minimum = 1 if f.name in ("threshold", "account_threshold", "max_auth_attempts",
                                      "max_connections_per_source", "max_entries") else 0
            values[f.name] = r.integer(f.name, default, minimum)
    return DefenderSettings(**values)


def _parse_algorithms(r: _Reader) -> AlgorithmSettings:

    r.unknown({"rsa_host_key", "rsa_host_key_path", "kex", "ciphers", "macs"})
    lists: dict[str, tuple[str, ...] | None] = {}
    for key, safe in (("kex", SAFE_KEX), ("ciphers", SAFE_CIPHERS), ("macs", SAFE_MACS)):
        value = r.strings(key)
        if value is not None:
            wrong = [name for name in value if name not in safe]
            if wrong:  # whether this installation offers them: rostergate.checks.sftp_algorithms
                r.bad(key, f"not allowed: {', '.join(wrong)} (allowed: {', '.join(safe)})")
                value = None
        lists[key] = value
    path = r.table.get("rsa_host_key_path")
    if path is not None and (not isinstance(path, str) or not path):
        r.bad("rsa_host_key_path", f"must be a non-empty string, got {path!r}")
        path = None
    return AlgorithmSettings(
        rsa_host_key=r.boolean("rsa_host_key", False),
        rsa_host_key_path=Path(path) if path else None,
        **lists,
    )
