"""Typed settings of alerts: ``[alerts]`` (the server default and the dispatcher), ``[flows.alerts]``
(a flow's overrides, key by key) and ``[flows.schedule]`` (the deadline watch).

```toml
[alerts]                                   # the server default, for every flow
webhook_url = "https://hooks.example/rostergate"       # JSON POST, signed (X-Rostergate-Signature)
webhook_secret_file = "/etc/rostergate/webhook.secret" # required with webhook_url; owner-only
smtp_url = "smtp://alerts@mail.example:587"           # smtp:// = STARTTLS (required), smtps:// = TLS
smtp_password_file = "/etc/rostergate/smtp.pass"      # required when smtp_url names a user
smtp_ca_file = "/etc/rostergate/mail-ca.pem"          # optional: CA bundle for the mail server
email_from = "rostergate@district.example"
email_to = ["it@district.example"]
events = ["run.rejected", "run.failed", "run.held", "run.retrying", "run.recovered", "account.late"]
retrying_after = "1h"                      # run.retrying once a delivery has been retrying this long
# the dispatcher (server only):
max_attempts = 8                           # tries per alert and channel
retry_base_seconds = 5                     # then twice as long each time ...
retry_max_seconds = 600                    # ... at most this
timeout_seconds = 10                       # per try
queue_size = 1000                          # alerts waiting at most; more are dropped (and logged)
check_interval_seconds = 60                # how often deadlines and long retries are looked at

[[flows]]
account = "district-a"
[flows.alerts]                             # any key of [alerts] above the dispatcher's; enabled = false: none
email_to = ["district-a-admin@district.example"]
[flows.schedule]
expect_upload = "daily 07:00 America/Chicago"          # or "every 24h"
```

Parsing returns ``key: reason`` problems (the caller, :mod:`rostergate.config`,
collects them); it never raises and never reads a secret.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rostergate.alerts.schedule import Schedule, parse_duration, parse_schedule

EVENTS = ("run.rejected", "run.failed", "run.held", "run.retrying", "run.recovered", "account.late")
# The keys a flow may override, and those only the server's [alerts] has (one dispatcher per daemon).
TARGET_KEYS = ("enabled", "webhook_url", "webhook_secret_file", "smtp_url", "smtp_password_file", "smtp_ca_file",
               "email_from", "email_to", "events", "retrying_after")
DISPATCH_KEYS = ("max_attempts", "retry_base_seconds", "retry_max_seconds", "timeout_seconds", "queue_size",
                 "check_interval_seconds")
SCHEDULE_KEYS = ("expect_upload",)


@dataclass(frozen=True)
class AlertSettings:
    """Where one account's alerts go: the server's ``[alerts]`` with its flow's ``[flows.alerts]`` over it."""

    enabled: bool = True
    webhook_url: str | None = None
    webhook_secret_file: Path | None = None
    smtp_url: str | None = None
    smtp_password_file: Path | None = None
    smtp_ca_file: Path | None = None
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    events: frozenset[str] = frozenset(EVENTS)
    retrying_after_seconds: float = 3600.0

    @property
    def channels(self) -> tuple[str, ...]:
        """``webhook`` and/or ``email``: the ways alerts go out (none when disabled)."""
        if not self.enabled:
            return ()
        found = []
        if self.webhook_url:
            found.append("webhook")
        if self.smtp_url and self.email_to:
            found.append("email")
        return tuple(found)

    def wants(self, event: str) -> bool:
        """True when ``event`` is sent somewhere for this account."""
        return event in self.events and bool(self.channels)

    def describe(self) -> str:
        """``by webhook and e-mail``: how the operator hears of an alert, for a district's report."""
        names = {"webhook": "webhook", "email": "e-mail"}
        return "by " + " and ".join(names[c] for c in self.channels) if self.channels else ""


@dataclass(frozen=True)
class DispatchSettings:
    """The server's alert dispatcher (``[alerts]``, server only): tries, back-off, queue, watch interval."""

    max_attempts: int = 8
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 600.0
    timeout_seconds: float = 10.0
    queue_size: int = 1000
    check_interval_seconds: float = 60.0


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_target(table: Any, prefix: str, base: Path, server: bool) -> tuple[dict[str, Any], list[str]]:
    """The alert keys present in ``table`` (``[alerts]`` with ``server``, else ``[flows.alerts]``), checked
    one by one and typed; merge them with :func:`merge`. Returns ``(values, problems)``."""
    problems: list[str] = []
    if not isinstance(table, dict):
        return {}, [f"{prefix}: must be a table"]
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{prefix}.{key}"
        if key in DISPATCH_KEYS and not server:
            problems.append(f"{where}: only in the server's [alerts] table (one dispatcher serves every flow)")
        elif key not in TARGET_KEYS and key not in DISPATCH_KEYS:
            problems.append(f"{where}: unknown key (expected {', '.join(TARGET_KEYS)})")
        elif key in TARGET_KEYS:
            problem = _target_value(key, value, base, values)
            if problem:
                problems.append(f"{where}: {problem}")
    return values, problems


def _target_value(key: str, value: Any, base: Path, values: dict[str, Any]) -> str | None:
    """Check and store one ``key``; returns the problem, if any."""
    if key == "enabled":
        if not isinstance(value, bool):
            return f"must be true or false, got {value!r}"
        values[key] = value
    elif key == "webhook_url":
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
            return f"expected an https:// (or http://) URL, got {value!r}"
        if parts.password:
            return "must not contain a password; the receiver checks the signature made with webhook_secret_file"
        values[key] = value
    elif key in ("webhook_secret_file", "smtp_password_file", "smtp_ca_file"):
        if not isinstance(value, str) or not value:
            return "must be a path"
        path = _resolve(base, value)
        if not path.is_file():
            return f"file not found: {path}"
        values[key] = path
    elif key == "smtp_url":
        return _smtp_url(value, values)
    elif key == "email_from":
        if not isinstance(value, str) or "@" not in value or any(c in value for c in "\r\n,"):
            return f"expected one e-mail address, got {value!r}"
        values[key] = value
    elif key == "email_to":
        addresses = [value] if isinstance(value, str) else value
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and "@" in a and not any(c in a for c in "\r\n,") for a in addresses)):
            return f'expected a list of e-mail addresses, e.g. ["it@district.example"], got {value!r}'
        values[key] = tuple(addresses)
    elif key == "events":
        if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
            return f"expected a list of events from {', '.join(EVENTS)}"
        unknown = [e for e in value if e not in EVENTS]
        if unknown:
            return f"unknown event {unknown[0]!r}; the events are {', '.join(EVENTS)}"
        values[key] = frozenset(value)
    elif key == "retrying_after":
        try:
            values["retrying_after_seconds"] = parse_duration(value).total_seconds()
        except ValueError as exc:
            return str(exc)
    return None


def _smtp_url(value: Any, values: dict[str, Any]) -> str | None:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        return (f"expected smtp://[user@]host[:587] (STARTTLS) or smtps://[user@]host[:465] (TLS), "
                f"got {value!r}")
    if parts.password:
        return "must not contain a password; use smtp_password_file"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "port must be 1-65535"
    values["smtp_url"] = value
    return None


def merge(default: dict[str, Any], override: dict[str, Any], prefix: str) -> tuple[AlertSettings, list[str]]:
    """The settings of ``default`` with ``override``'s keys over them, and what is missing for them to work
    (named under ``prefix``, the table that made them incomplete)."""
    merged = {**default, **override}
    settings = AlertSettings(**merged)
    problems = []
    if not settings.enabled:
        return settings, []
    if settings.webhook_url and not settings.webhook_secret_file:
        problems.append(f"{prefix}.webhook_secret_file: required with webhook_url: every webhook is signed "
                        "(X-Rostergate-Signature) with the secret in that file")
    if settings.smtp_url:
        if not settings.email_from:
            problems.append(f"{prefix}.email_from: required with smtp_url (the sender's address)")
        if not settings.email_to:
            problems.append(f"{prefix}.email_to: required with smtp_url (who receives the alerts)")
        if urlsplit(settings.smtp_url).username and not settings.smtp_password_file:
            problems.append(f"{prefix}.smtp_password_file: required when smtp_url names a user")
    elif settings.email_to:
        problems.append(f"{prefix}.smtp_url: required with email_to (the mail server that sends the alerts)")
    return settings, problems


def parse_dispatch(table: dict[str, Any], prefix: str) -> tuple[DispatchSettings, list[str]]:
    """The dispatcher's keys of the server's ``[alerts]`` table."""
    base, problems = DispatchSettings(), []
    values: dict[str, Any] = {}
    for key in DISPATCH_KEYS:
        value = table.get(key, getattr(base, key))
        whole = key in ("max_attempts", "queue_size")
        if whole and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(f"{prefix}.{key}: must be a whole number >= 1, got {value!r}")
            value = getattr(base, key)
        elif not whole and (not _number(value) or value <= 0):
            problems.append(f"{prefix}.{key}: must be a finite number of seconds > 0, got {value!r}")
            value = getattr(base, key)
        values[key] = int(value) if whole else float(value)
    return DispatchSettings(**values), problems


def parse_flow_schedule(table: Any, prefix: str) -> tuple[Schedule | None, list[str]]:
    """``[flows.schedule]``: ``expect_upload`` (see :mod:`rostergate.alerts.schedule`)."""
    if not isinstance(table, dict):
        return None, [f"{prefix}: must be a table"]
    problems = [f"{prefix}.{key}: unknown key (expected expect_upload)" for key in table if key not in SCHEDULE_KEYS]
    if "expect_upload" not in table:
        return None, [*problems, f'{prefix}.expect_upload: required, e.g. "daily 07:00 America/Chicago" or '
                                 '"every 24h"']
    try:
        return parse_schedule(table["expect_upload"]), problems
    except ValueError as exc:
        return None, [*problems, f"{prefix}.expect_upload: {exc}"]
