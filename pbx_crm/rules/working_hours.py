"""The company's working clock: which hours of which weekdays count, in its time zone.

Pure functions over datetimes (no database), used by the robots to count time in a stage in
business hours or days, and by ``pbx_crm.config`` to read the ``working_hours`` and
``working_days`` settings. A business day is one full working day's worth of working time
(with 09:00-18:00, nine working hours), so "2 business days" from Friday 17:00 is Tuesday
17:00. Public holidays are not known to the clock.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                   "sunday")
# A clock with no working time left in this many days back has no working days at all.
_SEARCH_DAYS = 366 * 20


def parse_working_hours(text: str) -> tuple[time, time]:
    """``09:00-18:00`` -> (09:00, 18:00); the day's end after its start, same day."""
    start_text, sep, end_text = text.strip().partition("-")
    try:
        if not sep:
            raise ValueError
        start, end = (_parse_time(part) for part in (start_text, end_text))
    except ValueError:
        raise ValueError(f"expected working hours such as 09:00-18:00, got {text!r}") from None
    if end <= start:
        raise ValueError(f"working hours {text!r} end before they start")
    return start, end


def _parse_time(text: str) -> time:
    text = text.strip()
    if text == "24:00":
        return time.max
    hours, sep, minutes = text.partition(":")
    if not (hours.isdigit() and (not sep or minutes.isdigit())):
        raise ValueError
    return time(int(hours), int(minutes or 0))


def parse_working_days(text: str) -> frozenset[int]:
    """``mon-fri`` or ``mon,tue,thu`` or ``sun-thu`` -> weekday numbers (Monday is 0)."""
    names = {name: i for i, name in enumerate(DAY_NAMES)}
    names.update({name: i for i, name in enumerate(_FULL_DAY_NAMES)})
    days: set[int] = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        first, sep, last = (p.strip() for p in part.partition("-"))
        if first not in names or (sep and last not in names):
            raise ValueError(f"expected weekdays such as mon-fri or mon,wed,fri, got {text!r}")
        day, end = names[first], names[last] if sep else names[first]
        days.add(day)
        while day != end:  # a range may wrap round the week: sun-thu
            day = (day + 1) % 7
            days.add(day)
    if not days:
        raise ValueError("at least one working day is needed")
    return frozenset(days)


@dataclass(frozen=True)
class WorkingClock:
    start: time
    end: time
    days: frozenset[int]
    time_zone: str

    @classmethod
    def of(cls, settings) -> WorkingClock:
        start, end = settings.working_hours
        return cls(start, end, settings.working_days, settings.time_zone)

    @property
    def day_length(self) -> timedelta:
        return _at(datetime(2000, 1, 3), self.end) - _at(datetime(2000, 1, 3), self.start)

    def _windows_back(self, moment: datetime):
        """The working windows (UTC start, UTC end) of each day, from ``moment``'s day back."""
        zone = zoneinfo.ZoneInfo(self.time_zone)
        local = moment.astimezone(zone)
        day = datetime(local.year, local.month, local.day)
        for _ in range(_SEARCH_DAYS):
            if day.weekday() in self.days:
                yield (_at(day, self.start, zone).astimezone(UTC),
                       _at(day, self.end, zone).astimezone(UTC))
            day -= timedelta(days=1)

    def cutoff(self, now: datetime, working: timedelta) -> datetime:
        """The latest moment from which ``working`` working time has passed by ``now``: a
        deal that entered its stage at or before it has been there that long."""
        left = working
        for start, end in self._windows_back(now):
            end = min(end, now)
            if end <= start:
                continue
            if left <= end - start:
                return end - left
            left -= end - start
        raise ValueError("the working clock has no working days")

    def working_time(self, since: datetime, until: datetime) -> timedelta:
        """Working time between two moments (for display and tests)."""
        total = timedelta()
        for start, end in self._windows_back(until):
            if end <= since:
                break
            total += max(timedelta(), min(end, until) - max(start, since))
        return total


def _at(day: datetime, clock: time, zone=None) -> datetime:
    if clock == time.max:
        return (day + timedelta(days=1)).replace(tzinfo=zone)
    return day.replace(hour=clock.hour, minute=clock.minute, tzinfo=zone)
