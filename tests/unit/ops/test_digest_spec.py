"""Schedules in words and cron, and their firing times across time zones and DST."""

from __future__ import annotations

import itertools
import re
import tracemalloc
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.digests.spec import ScheduleSpec, next_run, parse_schedule, previous_run
from shared.errors import InvalidInputError

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc,arg-type]


@pytest.mark.parametrize(
    ("text", "cron", "zone", "description"),
    [
        ("daily 09:00 Europe/Berlin", "0 9 * * *", "Europe/Berlin", "every day at 09:00"),
        ("weekly mon 08:00", "0 8 * * 1", "UTC", "every Monday at 08:00"),
        (
            "every weekday 17:30 America/New_York",
            "30 17 * * 1-5",
            "America/New_York",
            "every weekday at 17:30",
        ),
        ("hourly", "0 * * * *", "UTC", "every hour at :00"),
        ("hourly :15 europe/berlin", "15 * * * *", "Europe/Berlin", "every hour at :15"),
        ("every hour at :30", "30 * * * *", "UTC", "every hour at :30"),
        ("monthly 1 09:00", "0 9 1 * *", "UTC", "on day 1 of every month at 09:00"),
        ("monthly on the 15th at 08:30", "30 8 15 * *", "UTC", "on day 15 of every month"),
        ("every day at 7am", "0 7 * * *", "UTC", "every day at 07:00"),
        ("Weekly on Fri at 5:30pm", "30 17 * * 5", "UTC", "every Friday at 17:30"),
        ("every monday 09:00", "0 9 * * 1", "UTC", "every Monday at 09:00"),
        ("mon,thu 10:00", "0 10 * * 1,4", "UTC", "every Monday and Thursday at 10:00"),
        ("weekly tue wed sat 06:00", "0 6 * * 2,3,6", "UTC", "Tuesday, Wednesday and Saturday"),
        ("every weekend 10:00", "0 10 * * 0,6", "UTC", "every Saturday and Sunday"),
        ("weekly mondays and fridays 12pm", "0 12 * * 1,5", "UTC", "Monday and Friday at 12:00"),
        ("weekly mon-wed 12am", "0 0 * * 1-3", "UTC", "at 00:00"),
        ("cron 0 9 * * 1-5 Europe/Berlin", "0 9 * * 1-5", "Europe/Berlin", "cron '0 9 * * 1-5'"),
        ("0 9 * * 1-5", "0 9 * * 1-5", "UTC", "cron"),
        ("cron 0 9 * JAN,jul Sun", "0 9 * jan,jul sun", "UTC", "cron"),
        ("cron */10 8-18/2 1,15 * *", "*/10 8-18/2 1,15 * *", "UTC", "cron"),
    ],
)
def test_words_and_cron_parse(text: str, cron: str, zone: str, description: str) -> None:
    spec = parse_schedule(text)
    assert (spec.cron, spec.timezone) == (cron, zone)
    assert description in spec.description and spec.description.endswith(f"({zone})")


def test_default_timezone_applies_unless_one_is_given() -> None:
    assert parse_schedule("daily 09:00", default_timezone="Asia/Tokyo").timezone == "Asia/Tokyo"
    assert parse_schedule("daily 09:00 UTC", default_timezone="Asia/Tokyo").timezone == "UTC"
    with pytest.raises(InvalidInputError, match="unknown default time zone"):
        parse_schedule("daily 09:00", default_timezone="Mars/Olympus")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the schedule is empty"),
        ("   ", "the schedule is empty"),
        ("daily", "say at what time a daily digest fires"),
        ("daily 25:00", "not a time of day"),
        ("daily 13pm", "use 1-12 with am/pm"),
        ("daily 09:00 09:30", "give one time of day"),
        ("daily 09:00 foo", "unexpected 'foo'"),
        ("weekly 08:00", "say on which day"),
        ("weekly fri-mon 09:00", "runs backwards"),
        ("monthly 09:00", "say which day of the month"),
        ("monthly 31 09:00", "day 31 does not exist in every month"),
        ("hourly 75", "a minute past the hour"),
        ("fortnightly 09:00", "'fortnightly' is not a schedule word"),
        ("daily 09:00 Europe/Berln", "unknown time zone 'Europe/Berln'"),
        ("daily 09:00 UTC+2", "unknown time zone 'UTC+2'"),
        ("cron 0 9 * *", "has 5 fields"),
        ("cron 0 9 * * 8", "day of week 8 is outside 0-7"),
        ("cron 61 9 * * *", "minute 61 is outside 0-59"),
        ("cron 5-1 * * * *", "runs backwards"),
        ("cron 0 9 * foo *", "'foo' is not a valid month"),
        ("cron 0 9 ,1 * *", "empty item"),
        ("cron */0 * * * *", "must be 1 or more"),
        ("cron 0 0 30 2 *", "never fires"),
        ("cron * * * * *", "at most every 5 minutes"),
        ("cron 0,2 * * * *", "at most every 5 minutes"),
        ("daily " + "9" * 300, "longer than 200 characters"),
    ],
)
def test_bad_schedules_say_what_is_wrong_and_show_examples(text: str, problem: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_schedule(text)
    message = str(info.value)
    assert problem in message
    assert "daily 09:00 Europe/Berlin" in message  # shows forms that work


def test_next_run_in_the_schedules_own_zone() -> None:
    spec = parse_schedule("daily 09:00 Europe/Berlin")
    assert next_run(spec, utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 8)  # CET
    assert next_run(spec, utc(2026, 7, 10, 12)) == utc(2026, 7, 11, 7)  # CEST
    assert next_run(spec, utc(2026, 7, 11, 7)) == utc(2026, 7, 12, 7)  # strictly after
    weekday = parse_schedule("every weekday 17:30 America/New_York")
    assert next_run(weekday, utc(2026, 3, 6, 23)) == utc(2026, 3, 9, 21, 30)  # Fri → Mon, EDT
    monthly = parse_schedule("monthly 1 09:00")
    assert next_run(monthly, utc(2026, 12, 15)) == utc(2027, 1, 1, 9)


def test_aware_datetimes_only() -> None:
    spec = parse_schedule("hourly")
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run(spec, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        previous_run(spec, datetime(2026, 1, 1))


def test_spring_forward_runs_at_the_first_valid_instant_after_the_gap() -> None:
    # 2026-03-29: Berlin clocks jump from 02:00 CET to 03:00 CEST (01:00 UTC).
    spec = parse_schedule("daily 02:30 Europe/Berlin")
    fired = next_run(spec, utc(2026, 3, 28, 12))
    assert fired == utc(2026, 3, 29, 1)
    assert fired.astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"
    assert next_run(spec, fired) == utc(2026, 3, 30, 0, 30)  # 02:30 CEST the next day
    # Two firings inside the gap collapse onto the one instant: the digest runs once.
    half_hourly = parse_schedule("cron 0,30 2,3 * * * Europe/Berlin")
    after_gap = next_run(half_hourly, utc(2026, 3, 28, 23))
    assert after_gap == utc(2026, 3, 29, 1)
    assert next_run(half_hourly, after_gap) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert previous_run(spec, utc(2026, 3, 29, 2)) == utc(2026, 3, 29, 1)


def test_fall_back_runs_once_at_the_first_occurrence() -> None:
    # 2026-10-25: Berlin clocks go back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
    spec = parse_schedule("daily 02:30 Europe/Berlin")
    first = next_run(spec, utc(2026, 10, 24, 12))
    assert first == utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    assert next_run(spec, first) == utc(2026, 10, 26, 1, 30)  # not 02:30 CET the same night
    # Asked from inside the repeated hour, the second 02:30 is not a firing either.
    assert next_run(spec, utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)
    nine = parse_schedule("daily 09:00 Europe/Berlin")
    assert next_run(nine, utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 8)  # now CET


def test_previous_run_mirrors_next_run() -> None:
    spec = parse_schedule("cron */15 * * * * Europe/Berlin")
    moment = utc(2026, 5, 5, 10, 7)
    assert previous_run(spec, moment) == utc(2026, 5, 5, 10)
    assert next_run(spec, previous_run(spec, moment)) == utc(2026, 5, 5, 10, 15)
    leap = parse_schedule("cron 0 0 29 2 *")
    assert next_run(leap, utc(2026, 1, 1)) == utc(2028, 2, 29)
    assert previous_run(leap, utc(2026, 1, 1)) == utc(2024, 2, 29)


def test_day_of_month_or_weekday_when_both_are_restricted() -> None:
    spec = parse_schedule("cron 0 0 13 * 5")  # the 13th, or any Friday (Vixie cron)
    assert next_run(spec, utc(2026, 2, 1)) == utc(2026, 2, 6)  # a Friday
    assert next_run(spec, utc(2026, 2, 10)) == utc(2026, 2, 13)  # the 13th (also a Friday)
    assert next_run(spec, utc(2026, 2, 14)) == utc(2026, 2, 20)
    sunday_as_seven = parse_schedule("cron 0 0 * * 7")
    assert next_run(sunday_as_seven, utc(2026, 2, 1, 1)) == utc(2026, 2, 8)


def test_stored_specs_that_went_bad_fail_clearly() -> None:
    with pytest.raises(InvalidInputError, match="stored cron"):
        next_run(ScheduleSpec("0 9 *", "UTC", "x"), utc(2026, 1, 1))
    with pytest.raises(InvalidInputError, match="stored cron"):
        previous_run(ScheduleSpec("0 9 *", "UTC", "x"), utc(2026, 1, 1))
    with pytest.raises(InvalidInputError, match="unknown time zone"):
        next_run(ScheduleSpec("0 9 * * *", "Nowhere/Land", "x"), utc(2026, 1, 1))
    with pytest.raises(InvalidInputError, match="never fires"):
        next_run(ScheduleSpec("0 0 31 4 *", "UTC", "x"), utc(2026, 1, 1))
    with pytest.raises(InvalidInputError, match="never fired"):
        previous_run(ScheduleSpec("0 0 31 4 *", "UTC", "x"), utc(2026, 1, 1))


def test_every_hour_of_a_dst_week_fires_once_per_wall_clock_hour() -> None:
    spec = parse_schedule("hourly Europe/Berlin")
    moment, fired = utc(2026, 3, 28), []
    while moment < utc(2026, 3, 30):
        moment = next_run(spec, moment)
        fired.append(moment)
    gaps = {b - a for a, b in itertools.pairwise(fired)}
    assert gaps == {timedelta(hours=1)}  # the skipped 02:00 collapses onto 03:00
    assert len(fired) == 48


@pytest.mark.parametrize(
    ("text", "cron"),
    [
        ("every 5 minutes", "*/5 * * * *"),
        ("every 15 mins", "*/15 * * * *"),
        ("every 6 hours", "0 */6 * * *"),
        ("every 1 hour", "0 * * * *"),
    ],
)
def test_intervals_in_minutes_and_hours(text: str, cron: str) -> None:
    assert parse_schedule(text).cron == cron


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("every 3 minutes", "at least 5"),
        ("every 7 minutes", "divide the hour"),
        ("every 5 hours", "divide the day"),
    ],
)
def test_intervals_that_do_not_fit_say_why(text: str, problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem) as info:
        parse_schedule(text)
    assert "weekly digest" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("weekly mon", "say at what time a weekly digest fires"),
        ("every monday", "say at what time a weekly digest fires"),
        ("monthly 1", "say at what time a monthly digest fires"),
        ("every minute", "an interval in minutes"),
        ("every 2 weeks", "minutes or hours"),
        ("every 3 days 09:00", "minutes or hours"),
    ],
)
def test_the_fix_a_refusal_suggests_is_a_schedule_that_works(text: str, problem: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_schedule(text)
    message = str(info.value)
    assert problem in message
    for suggestion in re.findall(r"e\.g\. '([^']+)'", message):
        parse_schedule(suggestion)


def test_schedules_parsed_are_not_kept_forever() -> None:
    """Every schedule anyone types (also one refused later, e.g. at the cap) is parsed; a
    process that keeps each one grows without bound under a stream of distinct texts."""
    texts = [f"cron {m} {h} {d} * *" for m in range(60) for h in range(24) for d in (1, 15)]
    tracemalloc.start()
    try:
        for text in texts[:1000]:  # whatever parsing keeps at its fullest
            parse_schedule(text)
        before = tracemalloc.get_traced_memory()[0]
        for text in texts[1000:2000]:
            parse_schedule(text)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 200_000, f"{grown} bytes more kept after parsing 1000 more schedules"


def test_a_huge_time_zone_is_refused_without_echoing_it() -> None:
    """The bot's ``timezone`` option takes up to 6,000 characters; an answer that repeats them
    all is longer than a Discord message can be, so the member would get no answer at all."""
    with pytest.raises(InvalidInputError) as info:
        parse_schedule("daily 09:00", default_timezone="Europe/" + "x" * 5000)
    message = info.value.user_message
    assert "time zone" in message and "Europe/Berlin" in message
    assert len(message) < 600
