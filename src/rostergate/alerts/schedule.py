"""When an account is expected to upload, and whether it missed a deadline: pure time arithmetic.

``[flows.schedule] expect_upload`` takes two forms:

* ``"daily HH:MM ZONE"`` (``"daily 07:00 America/Chicago"``; the zone is an IANA
  name, default UTC): every day at that local time there must have been an upload
  since the day before's deadline. The deadline follows the zone's daylight saving
  time; a time that does not exist on a spring-forward day falls an hour later.
* ``"every DURATION"`` (``"every 24h"``, ``"every 90m"``, ``"every 2d"``): at most
  that long may pass between two uploads.

A deadline is *missed* when it passed and no upload came between the one before it
and now: an upload that arrives late clears the lateness (no alert is sent for a
deadline once the district has caught up). Each missed deadline is one instant, so
an alert can be sent once per missed deadline (:func:`missed_deadline`), and a
district that stays silent is reported again at each following deadline. Deadlines
before ``since`` (when the account was created) are never missed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DAILY = re.compile(r"^daily\s+(\d{1,2}):(\d{2})(?:\s+(\S+))?$")
_EVERY = re.compile(r"^every\s+(.+)$")
MIN_EVERY = timedelta(minutes=1)


def parse_duration(text: str) -> timedelta:
    """``"90m"``, ``"24h"``, ``"2d"``, ``"30s"`` as a positive :class:`timedelta`; ValueError otherwise."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or int(match[1]) == 0:
        raise ValueError(f"{text!r} is not a duration: write a whole number and a unit, e.g. 30m, 24h or 2d")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


@dataclass(frozen=True)
class Schedule:
    """A parsed ``expect_upload``: ``text`` as written, and either ``every`` or ``at`` in ``zone``."""

    text: str
    every: timedelta | None = None
    at: time | None = None
    zone: ZoneInfo | None = None

    def slot(self, day: datetime) -> datetime:
        """The daily deadline on ``day``'s local date (in ``zone``), as an aware datetime."""
        assert self.at is not None and self.zone is not None
        local = day.astimezone(self.zone).date()
        moment = datetime.combine(local, self.at, tzinfo=self.zone)
        # A wall time skipped by a spring-forward: round-tripping through UTC lands on the real instant.
        return moment.astimezone(UTC).astimezone(self.zone)

    def last_slot(self, now: datetime) -> datetime:
        """The latest daily deadline at or before ``now``."""
        today = self.slot(now)
        return today if today <= now else self.shift_days(today, -1)

    def shift_days(self, slot: datetime, days: int) -> datetime:
        """The daily deadline ``days`` local days after (or before) the deadline ``slot``."""
        assert self.zone is not None and self.at is not None
        date = slot.astimezone(self.zone).date() + timedelta(days=days)
        return datetime.combine(date, self.at, tzinfo=self.zone).astimezone(UTC).astimezone(self.zone)


def parse_schedule(text: object) -> Schedule:
    """``"daily 07:00 America/Chicago"`` or ``"every 24h"``; ValueError saying what is accepted otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError('expected "daily HH:MM ZONE" (e.g. "daily 07:00 America/Chicago") or "every 24h"')
    cleaned = " ".join(text.split())
    every = _EVERY.match(cleaned)
    if every:
        interval = parse_duration(every[1])
        if interval < MIN_EVERY:
            raise ValueError(f"{text!r}: the interval must be at least 1 minute")
        return Schedule(text=cleaned, every=interval)
    daily = _DAILY.match(cleaned)
    if not daily:
        raise ValueError(f'{text!r}: expected "daily HH:MM ZONE" (e.g. "daily 07:00 America/Chicago") '
                         'or "every DURATION" (e.g. "every 24h")')
    hour, minute, zone_name = int(daily[1]), int(daily[2]), daily[3] or "UTC"
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r}: {daily[1]}:{daily[2]} is not a time of day (00:00 to 23:59)")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r}: unknown time zone {zone_name!r}; use an IANA name such as "
                         "America/Chicago or UTC") from None
    return Schedule(text=cleaned, at=time(hour, minute), zone=zone)


def missed_deadline(schedule: Schedule, last_upload: datetime | None, since: datetime,
                    now: datetime) -> datetime | None:
    """The latest deadline that passed without an upload (module doc), or None when the account is on time.

    ``last_upload`` is the time of the account's latest completed upload (None: never),
    ``since`` when the account was created; all three are aware datetimes.
    """
    if schedule.every is not None:
        start = max(last_upload, since) if last_upload is not None else since
        periods = (now - start) // schedule.every
        return start + periods * schedule.every if periods >= 1 else None
    deadline = schedule.last_slot(now)
    before = schedule.shift_days(deadline, -1)
    if deadline <= since or (last_upload is not None and last_upload > before):
        return None
    return deadline.astimezone(UTC)


def next_deadline(schedule: Schedule, last_upload: datetime | None, since: datetime, now: datetime) -> datetime:
    """The next deadline after ``now`` that an upload must beat."""
    if schedule.every is not None:
        start = max(last_upload, since) if last_upload is not None else since
        periods = (now - start) // schedule.every
        return start + (periods + 1) * schedule.every
    return schedule.shift_days(schedule.last_slot(now), 1).astimezone(UTC)
