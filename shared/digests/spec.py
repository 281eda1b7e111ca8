"""Digest schedules in words people use (or cron for experts), and when they fire next.

Accepted forms (case does not matter; a trailing IANA time zone is optional)::

    hourly                      hourly :15              every hour at :30
    every 15 minutes            every 6 hours
    daily 09:00 Europe/Berlin   every day at 7am        daily at 18:30
    weekly mon 08:00            weekly on fri at 17:00  every monday 09:00
    every weekday 17:30 America/New_York                every weekend 10:00
    monthly 1 09:00             monthly on the 15th at 08:30
    cron 0 9 * * 1-5 Europe/Berlin                      0 9 * * 1-5

A schedule is evaluated in its own time zone, so "daily 09:00 Europe/Berlin" fires at 09:00 Berlin
time in winter and in summer.  Daylight-saving changes follow one rule each way:

- a local time that does not exist (clocks spring forward over it) fires at the first valid
  instant after it, i.e. the moment the clocks jump (02:30 on the spring-forward night in
  Berlin fires at 03:00 CEST);
- a local time that happens twice (clocks fall back) fires once, at its first occurrence.

The cron evaluator is our own (five fields, names, ranges, steps and lists, Vixie day matching:
when both day-of-month and day-of-week are restricted, either may match), so the DST rules above
are exactly what runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from shared.errors import InvalidInputError

__all__ = [
    "MIN_INTERVAL_MINUTES",
    "ScheduleSpec",
    "next_run",
    "parse_schedule",
    "previous_run",
]

#: Digests fire at most this often (a tighter cron is refused).
MIN_INTERVAL_MINUTES = 5

# Feb 29 with a restricted weekday may be 8 years (plus a century skip) away.
_HORIZON_DAYS = 366 * 9

_EXAMPLES = (
    "try 'daily 09:00 Europe/Berlin', 'weekly mon 08:00', "
    "'every weekday 17:30 America/New_York', 'hourly', 'monthly 1 09:00' "
    "or 'cron 0 9 * * 1-5 Europe/Berlin'"
)

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_WORDS = {
    **{name: i for i, name in enumerate(_DAY_NAMES)},
    "sunday": 0,
    "monday": 1,
    "tuesday": 2,
    "tues": 2,
    "wednesday": 3,
    "thursday": 4,
    "thur": 4,
    "thurs": 4,
    "friday": 5,
    "saturday": 6,
}
_DAY_TITLES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_FILLER = {"at", "on", "the", "of", "every", "each"}


@dataclass(frozen=True)
class ScheduleSpec:
    """A parsed schedule: a five-field cron expression evaluated in ``timezone``.

    ``description`` says in plain words when it fires, e.g. "every weekday at 17:30
    (America/New_York)".
    """

    cron: str
    timezone: str
    description: str


def _invalid(text: str, problem: str) -> InvalidInputError:
    return InvalidInputError(f"schedule {text!r}: {problem}; {_EXAMPLES}")


# --- time zones -------------------------------------------------------------------------------


# Files the host's zone directory may hold beside the zones: "localtime" links to the host's
# own /etc/localtime, so a schedule in it would fire by whatever zone the server is set to.
_NOT_ZONES = frozenset({"localtime"})


@cache
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones() if name not in _NOT_ZONES}


def _canonical_zone(name: str) -> str | None:
    """The IANA spelling of ``name`` (any case), or None when there is no such zone."""
    if name.upper() in ("UTC", "Z"):
        return "UTC"
    return _zone_names().get(name.lower())


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInputError(_unknown_zone(name)) from None


def _unknown_zone(name: str) -> str:
    return (
        f"unknown time zone {_shown(name)!r}; use an IANA name such as Europe/Berlin, "
        "America/New_York or UTC"
    )


def _shown(name: str) -> str:
    """``name`` as an error repeats it: IANA names are short, and an answer repeating thousands
    of characters would not fit in a Discord message."""
    return name if len(name) <= 64 else name[:40] + "…"


# --- cron fields ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES, 1),
    _Field("day of week", 0, 7, _DAY_NAMES, 0),
)


@dataclass(frozen=True)
class _Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def wall_times(self, day: date) -> Iterator[datetime]:
        for hour in self.hours:
            for minute in self.minutes:
                yield datetime.combine(day, time(hour, minute))


def _value(token: str, field: _Field) -> int:
    if token.isdigit():
        number = int(token)
    elif field.names is _DAY_NAMES and token in _DAY_WORDS:
        number = _DAY_WORDS[token]
    elif token in field.names:
        number = field.names.index(token) + field.name_base
    else:
        raise ValueError(f"{token!r} is not a valid {field.name}")
    if not field.low <= number <= field.high:
        raise ValueError(f"{field.name} {number} is outside {field.low}-{field.high}")
    return number


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"empty item in the {field.name} field")
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"step {step_text!r} of the {field.name} must be 1 or more")
            step = int(step_text)
        if body == "*":
            low, high = field.low, field.high
        elif "-" in body:
            first, _, last = body.partition("-")
            low, high = _value(first, field), _value(last, field)
            if low > high:
                raise ValueError(f"range {body!r} of the {field.name} runs backwards")
        else:
            low = _value(body, field)
            high = field.high if step_text else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


# Bounded: every text anyone submits is compiled, so an unbounded cache would keep them all.
@lru_cache(maxsize=256)
def _compile(cron: str) -> _Cron:
    parts = cron.lower().split()
    if len(parts) != 5:
        raise ValueError(
            f"a cron expression has 5 fields (minute hour day month weekday), not {len(parts)}"
        )
    minutes, hours, days, months, weekdays = (
        _parse_field(part, field) for part, field in zip(parts, _FIELDS, strict=True)
    )
    return _Cron(
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=days,
        months=months,
        weekdays=frozenset(d % 7 for d in weekdays),
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )


def _check_fires(cron: _Cron) -> None:
    if cron.days_restricted and not cron.weekdays_restricted:
        longest = max(_MONTH_DAYS[m - 1] for m in cron.months)
        if min(cron.days) > longest:
            raise ValueError("it never fires: no chosen month has that day")
    if len(cron.minutes) > 1:
        minutes = cron.minutes
        gaps = [b - a for a, b in zip(minutes, (*minutes[1:], minutes[0] + 60), strict=True)]
        if min(gaps) < MIN_INTERVAL_MINUTES:
            raise ValueError(f"digests may fire at most every {MIN_INTERVAL_MINUTES} minutes")


# --- words ------------------------------------------------------------------------------------

_TIME = re.compile(r"^(\d{1,2})(?::(\d{2}))?(am|pm)?$")


def _parse_time(token: str) -> tuple[int, int] | None:
    match = _TIME.match(token)
    if match is None or (match.group(2) is None and match.group(3) is None):
        return None
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    suffix = match.group(3)
    if suffix:
        if not 1 <= hour <= 12:
            raise ValueError(f"{token!r} is not a time: use 1-12 with am/pm")
        hour = hour % 12 + (12 if suffix == "pm" else 0)
    if hour > 23 or minute > 59:
        raise ValueError(f"{token!r} is not a time of day (00:00-23:59)")
    return hour, minute


# Each a schedule that parses: a refusal's suggestion must work when copied.
_TIME_EXAMPLES = {
    "daily": "daily 09:00",
    "weekly": "weekly mon 09:00",
    "monthly": "monthly 1 09:00",
}


def _take_time(words: list[str], kind: str) -> tuple[int, int]:
    times = []
    rest = []
    for word in words:
        parsed = _parse_time(word)
        if parsed is None:
            rest.append(word)
        else:
            times.append(parsed)
    if not times:
        raise ValueError(f"say at what time a {kind} digest fires, e.g. '{_TIME_EXAMPLES[kind]}'")
    if len(times) > 1:
        raise ValueError("give one time of day")
    words[:] = rest
    return times[0]


def _day_word(word: str) -> int | None:
    """Day of week (0 = Sunday) of a name such as mon, Monday or mondays."""
    if word in _DAY_WORDS:
        return _DAY_WORDS[word]
    if word.endswith("s") and word[:-1] in _DAY_WORDS:
        return _DAY_WORDS[word[:-1]]
    return None


def _take_days(words: list[str]) -> list[int]:
    days: list[int] = []
    rest = []
    for word in words:
        names = [part for part in re.split(r"[,/&]", word) if part]
        ends = word.split("-")
        if names and all(_day_word(name) is not None for name in names):
            days.extend(d for d in map(_day_word, names) if d is not None)
        elif len(ends) == 2 and all(_day_word(end) is not None for end in ends):
            first, last = (_DAY_WORDS.get(end, _DAY_WORDS.get(end[:-1], 0)) for end in ends)
            if first > last:
                raise ValueError(f"day range {word!r} runs backwards (use e.g. mon-fri)")
            days.extend(range(first, last + 1))
        elif word != "and":
            rest.append(word)
    words[:] = rest
    return sorted(set(days))


def _day_of_month(words: list[str]) -> int:
    numbers = []
    rest = []
    for word in words:
        match = re.fullmatch(r"(\d{1,2})(st|nd|rd|th)?", word)
        if match:
            numbers.append(int(match.group(1)))
        else:
            rest.append(word)
    if len(numbers) != 1:
        raise ValueError("say which day of the month, e.g. 'monthly 1 09:00'")
    day = numbers[0]
    if not 1 <= day <= 28:
        raise ValueError(
            f"day {day} does not exist in every month; use 1-28, or cron for other days"
        )
    words[:] = rest
    return day


def _hourly_minute(words: list[str]) -> int:
    if not words:
        return 0
    if len(words) == 1 and re.fullmatch(r":?\d{1,2}", words[0]):
        minute = int(words[0].lstrip(":"))
        if minute <= 59:
            words.clear()
            return minute
    raise ValueError("an hourly digest takes at most a minute past the hour, e.g. 'hourly :15'")


def _clock(hour: int, minute: int) -> str:
    return f"{hour:02d}:{minute:02d}"


_MINUTES_RULE = (
    f"an interval in minutes must divide the hour and be at least {MIN_INTERVAL_MINUTES}, "
    "e.g. 'every 15 minutes'"
)
_UNITS = frozenset({"minute", "minutes", "min", "mins", "hour", "hours"})


def _interval(count: int, unit: str, rest: list[str]) -> tuple[str, str]:
    """``every N minutes`` / ``every N hours``: intervals that divide the hour or the day."""
    _no_more(rest)
    if unit.startswith("min"):
        if count < MIN_INTERVAL_MINUTES or 60 % count:
            raise ValueError(_MINUTES_RULE)
        return f"*/{count} * * * *", f"every {count} minutes"
    if count < 1 or 24 % count:
        raise ValueError("an interval in hours must divide the day, e.g. 'every 6 hours'")
    if count == 1:
        return "0 * * * *", "every hour at :00"
    return f"0 */{count} * * *", f"every {count} hours"


def _from_words(words: list[str]) -> tuple[str, str]:
    """``(cron, description)`` of a schedule said in words (time zone already removed)."""
    head = words[0]
    rest = [w for w in words[1:] if w not in _FILLER]
    if head == "every" and len(rest) >= 2 and rest[0].isdigit() and rest[1] in _UNITS:
        return _interval(int(rest[0]), rest[1], rest[2:])
    if head == "every" and rest[:1] and rest[0].isdigit():
        raise ValueError(
            "an interval is counted in minutes or hours, e.g. 'every 15 minutes'; for days "
            "or weeks say when, e.g. 'daily 09:00' or 'weekly mon 09:00', or use cron"
        )
    if head == "every" and rest[:1] in (["minute"], ["min"]):
        raise ValueError(_MINUTES_RULE)
    if head == "every" and rest[:1] in (["hour"], ["hourly"]):
        head, rest = "hourly", rest[1:]
    elif head == "every" and rest[:1] in (["day"], ["daily"]):
        head, rest = "daily", rest[1:]
    elif head == "every" and rest[:1] in (["weekday"], ["weekdays"]):
        head, rest = "weekly", ["mon-fri", *rest[1:]]
    elif head == "every" and rest[:1] in (["weekend"], ["weekends"]):
        head, rest = "weekly", ["sat", "sun", *rest[1:]]
    elif head == "every":
        head = "weekly"
    elif _take_days([head]):
        rest = [head, *rest]
        head = "weekly"

    if head == "hourly":
        minute = _hourly_minute(rest)
        return f"{minute} * * * *", f"every hour at :{minute:02d}"
    if head == "daily":
        hour, minute = _take_time(rest, "daily")
        _no_more(rest)
        return f"{minute} {hour} * * *", f"every day at {_clock(hour, minute)}"
    if head == "weekly":
        hour, minute = _take_time(rest, "weekly")
        days = _take_days(rest)
        _no_more(rest)
        if not days:
            raise ValueError("say on which day a weekly digest fires, e.g. 'weekly mon 08:00'")
        return f"{minute} {hour} * * {_cron_days(days)}", (
            f"every {_day_titles(days)} at {_clock(hour, minute)}"
        )
    if head == "monthly":
        hour, minute = _take_time(rest, "monthly")
        day = _day_of_month(rest)
        _no_more(rest)
        return (
            f"{minute} {hour} {day} * *",
            f"on day {day} of every month at {_clock(hour, minute)}",
        )
    raise ValueError(f"{head!r} is not a schedule word")


def _cron_days(days: list[int]) -> str:
    if len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
        return f"{days[0]}-{days[-1]}"
    return ",".join(str(d) for d in days)


def _day_titles(days: list[int]) -> str:
    if days == [1, 2, 3, 4, 5]:
        return "weekday"
    if days == [0, 6]:
        return "Saturday and Sunday"
    titles = [_DAY_TITLES[d] for d in days]
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]


def _no_more(rest: list[str]) -> None:
    if rest:
        raise ValueError(f"unexpected {' '.join(rest)!r}")


_CRON_TOKEN = re.compile(r"^[0-9a-z*,/-]+$")
# Area/Location names or offsets such as GMT+2: meant as a time zone.
_ZONE_LIKE = re.compile(r"[A-Za-z_]+/[A-Za-z_/+-]+|[A-Za-z]+[+-]\d{1,2}")


def parse_schedule(text: str, *, default_timezone: str = "UTC") -> ScheduleSpec:
    """Parse a schedule said in words or as cron; raise :class:`InvalidInputError` if wrong.

    A trailing IANA time zone overrides ``default_timezone``.  The error message says what is
    wrong and shows forms that work.
    """
    tokens = text.split()
    if not tokens:
        raise _invalid(text, "the schedule is empty")
    if len(text) > 200:
        raise _invalid(text[:40] + "…", "the schedule is longer than 200 characters")
    zone_name = _canonical_zone(default_timezone)
    if zone_name is None:
        raise _invalid(text, f"unknown default time zone {_shown(default_timezone)!r}")
    if len(tokens) > 1:
        trailing = _canonical_zone(tokens[-1])
        if trailing is not None:
            zone_name = trailing
            tokens = tokens[:-1]
        elif _ZONE_LIKE.fullmatch(tokens[-1]):
            raise _invalid(text, _unknown_zone(tokens[-1]))
    _zone(zone_name)
    words = [t.lower() for t in tokens]
    try:
        if words[0] == "cron" or (
            len(words) == 5 and all(_CRON_TOKEN.match(w) for w in words) and _looks_cron(words)
        ):
            fields = words[1:] if words[0] == "cron" else words
            cron = " ".join(fields)
            compiled = _compile(cron)
            description = f"cron {cron!r}"
        else:
            cron, description = _from_words(words)
            compiled = _compile(cron)
        _check_fires(compiled)
    except ValueError as exc:
        raise _invalid(text, str(exc)) from None
    return ScheduleSpec(cron=cron, timezone=zone_name, description=f"{description} ({zone_name})")


def _looks_cron(words: list[str]) -> bool:
    """Five tokens of which the first two are minute/hour items: a bare cron expression."""
    return all(re.fullmatch(r"[0-9*,/-]+", w) for w in words[:2])


# --- evaluation -------------------------------------------------------------------------------


def _resolve(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a local wall-clock time fires at, under the DST rules above."""
    first = wall.replace(tzinfo=zone, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant  # exists; fold=0 is the first occurrence of an ambiguous time
    # In a gap: fold=0 reads it with the offset before the jump (an instant after the jump),
    # fold=1 with the offset after (an instant before it).  The jump is the first instant
    # whose offset is the later one.
    later = wall.replace(tzinfo=zone, fold=1).utcoffset()
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = instant
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == later:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


# Wall-clock times further than this from the reference cannot be the answer (no offset
# change is this large), so they are skipped without resolving them.
_SLACK = timedelta(hours=3)


def _candidates(cron: _Cron, zone: ZoneInfo, moment: datetime, step: int) -> Iterator[datetime]:
    """Firing instants in time order (``step`` 1) or reverse order (-1) around ``moment``."""
    local = moment.astimezone(zone).replace(tzinfo=None)
    day = local.date() - timedelta(days=step)
    for _ in range(_HORIZON_DAYS):
        if cron.matches(day):
            walls = list(cron.wall_times(day))
            for wall in walls if step > 0 else reversed(walls):
                if (wall - local) * step >= -_SLACK:
                    yield _resolve(wall, zone)
        day += timedelta(days=step)


def _checked(after: datetime, name: str) -> datetime:
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(UTC))")
    return after.astimezone(UTC)


def _firings(spec: ScheduleSpec, moment: datetime, step: int) -> Iterator[datetime]:
    """A stored schedule's firings strictly after (``step`` 1) or before (-1) ``moment``."""
    zone = _zone(spec.timezone)
    try:
        cron = _compile(spec.cron)
    except ValueError as exc:
        raise InvalidInputError(f"stored cron {spec.cron!r} is invalid: {exc}") from None
    return (i for i in _candidates(cron, zone, moment, step) if (i - moment) * step > timedelta(0))


def next_run(spec: ScheduleSpec, after: datetime) -> datetime:
    """The first firing strictly after ``after``, as an aware UTC datetime."""
    instant = next(_firings(spec, _checked(after, "after"), 1), None)
    if instant is None:
        raise InvalidInputError(f"cron {spec.cron!r} never fires")
    return instant


def previous_run(spec: ScheduleSpec, before: datetime) -> datetime:
    """The last firing strictly before ``before``, as an aware UTC datetime."""
    instant = next(_firings(spec, _checked(before, "before"), -1), None)
    if instant is None:
        raise InvalidInputError(f"cron {spec.cron!r} never fired")
    return instant
