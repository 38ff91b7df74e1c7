"""Deadlines of ``expect_upload``: parsing, missed and next deadlines, daylight saving time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rostergate.alerts.schedule import missed_deadline, next_deadline, parse_duration, parse_schedule

CHICAGO_DAILY = parse_schedule("daily 07:00 America/Chicago")
CREATED = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("text", "every", "at"), [
    ("every 24h", timedelta(hours=24), None),
    ("every  90m", timedelta(minutes=90), None),
    ("every 2d", timedelta(days=2), None),
    ("daily 07:00 America/Chicago", None, "07:00"),
    ("daily 7:30", None, "07:30"),  # UTC when no zone is named
])
def test_parse_accepts_the_two_forms(text, every, at):
    schedule = parse_schedule(text)
    assert schedule.every == every
    assert (schedule.at.strftime("%H:%M") if schedule.at else None) == at


@pytest.mark.parametrize(("text", "says"), [
    ("daily 25:00 UTC", "not a time of day"),
    ("daily 07:00 Mars/Olympus", "unknown time zone"),
    ("weekly 07:00", "expected"),
    ("every 0h", "not a duration"),
    ("every 30s", "at least 1 minute"),
    ("every soon", "not a duration"),
    ("", "expected"),
    (24, "expected"),
])
def test_parse_refuses_with_what_is_accepted(text, says):
    with pytest.raises(ValueError, match=says):
        parse_schedule(text)


def test_parse_duration():
    assert parse_duration("45s") == timedelta(seconds=45)
    with pytest.raises(ValueError):
        parse_duration("1.5h")


def test_daily_is_late_once_the_deadline_passes_without_an_upload_since_the_day_before():
    # 07:00 in Chicago is 13:00 UTC in November (CST, UTC-6).
    uploaded = utc("2026-11-20T10:00:00")  # before the deadline of the 20th: counts for the 20th only
    assert missed_deadline(CHICAGO_DAILY, uploaded, CREATED, utc("2026-11-21T12:59:00")) is None
    assert missed_deadline(CHICAGO_DAILY, uploaded, CREATED, utc("2026-11-21T13:00:00")) == utc("2026-11-21T13:00")
    # a day later, still nothing: the next deadline is missed too (a new alert)
    assert missed_deadline(CHICAGO_DAILY, uploaded, CREATED, utc("2026-11-22T14:00:00")) == utc("2026-11-22T13:00")


def test_daily_an_upload_before_the_deadline_is_on_time_and_a_late_one_clears_the_lateness():
    on_time = utc("2026-11-21T02:00:00")  # the nightly export, in the window of the 21st's deadline
    assert missed_deadline(CHICAGO_DAILY, on_time, CREATED, utc("2026-11-21T20:00:00")) is None
    late = utc("2026-11-21T15:00:00")  # after the 21st's deadline: the district caught up
    assert missed_deadline(CHICAGO_DAILY, late, CREATED, utc("2026-11-21T16:00:00")) is None
    assert next_deadline(CHICAGO_DAILY, late, CREATED, utc("2026-11-21T16:00:00")) == utc("2026-11-22T13:00")


def test_daily_deadlines_before_the_account_existed_are_never_missed():
    created = utc("2026-11-21T14:00:00")
    assert missed_deadline(CHICAGO_DAILY, None, created, utc("2026-11-21T20:00:00")) is None
    assert missed_deadline(CHICAGO_DAILY, None, created, utc("2026-11-22T13:00:00")) == utc("2026-11-22T13:00")


def test_daily_follows_daylight_saving_time():
    # 2026-03-08: Chicago moves from CST (UTC-6) to CDT (UTC-5); 07:00 local is then 12:00 UTC.
    before = utc("2026-03-07T13:00:00")
    assert missed_deadline(CHICAGO_DAILY, None, CREATED.replace(month=1), utc("2026-03-07T13:30")) == before
    assert missed_deadline(CHICAGO_DAILY, None, CREATED.replace(month=1), utc("2026-03-08T12:30")) == \
        utc("2026-03-08T12:00")
    # an upload at 12:30 UTC on the 7th (06:30 CST) was before the 7th's deadline, not the 8th's
    assert missed_deadline(CHICAGO_DAILY, utc("2026-03-07T12:30"), CREATED.replace(month=1),
                           utc("2026-03-08T12:00")) == utc("2026-03-08T12:00")


def test_a_wall_time_that_does_not_exist_falls_an_hour_later():
    schedule = parse_schedule("daily 02:30 America/Chicago")  # 02:30 does not exist on 2026-03-08
    deadline = missed_deadline(schedule, None, CREATED.replace(month=1), utc("2026-03-08T12:00"))
    assert deadline == utc("2026-03-08T08:30")  # 03:30 CDT


def test_every_counts_from_the_last_upload_and_each_period_is_one_missed_deadline():
    every = parse_schedule("every 24h")
    last = utc("2026-11-20T08:00:00")
    assert missed_deadline(every, last, CREATED, utc("2026-11-21T07:59:59")) is None
    assert missed_deadline(every, last, CREATED, utc("2026-11-21T08:00:00")) == utc("2026-11-21T08:00")
    assert missed_deadline(every, last, CREATED, utc("2026-11-22T09:00:00")) == utc("2026-11-22T08:00")
    assert next_deadline(every, last, CREATED, utc("2026-11-21T09:00:00")) == utc("2026-11-22T08:00")


def test_every_without_any_upload_counts_from_the_account_creation():
    every = parse_schedule("every 24h")
    assert missed_deadline(every, None, CREATED, CREATED + timedelta(hours=23)) is None
    assert missed_deadline(every, None, CREATED, CREATED + timedelta(hours=25)) == CREATED + timedelta(hours=24)
