"""UTC timestamps in one format: ISO 8601 with a ``Z`` suffix, second precision (milliseconds for steps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime | None = None) -> str:
    """``2026-11-22T08:41:51Z`` for ``moment`` (default: now)."""
    return (moment or now()).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(moment: datetime | None = None) -> str:
    """``2026-11-22T08:41:51.123Z`` for ``moment`` (default: now, from the real clock): a step's times.

    Steps of a run take tens of milliseconds; seconds would say nothing of them. The
    default reads the system clock, not :func:`now` (which tests may stop): a step's
    duration is real time.
    """
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_since(text: str) -> datetime:
    """``24h``, ``30m``, ``7d`` (ago) or an ISO date/date-time; raises ValueError otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return now() - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
