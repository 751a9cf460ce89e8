"""Local days in SQL: which calendar day, in the company's time zone, an instant fell on.

The reports and their daily counts both group by local day inside the database; a zone's
offset can change within a period (daylight saving), so the SQL carries each change found by
walking the period in Python. Shared by ``reports`` and ``days``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Integer, case, cast, func, literal

EPOCH_DAY = date(1970, 1, 1)


def offset_changes(zone: ZoneInfo, start: datetime, end: datetime) -> tuple[int, list]:
    """The UTC offset (seconds) at ``start``, and each later change before ``end`` as
    (UTC epoch second it takes effect, new offset)."""
    def offset(at: datetime) -> int:
        return int(at.astimezone(zone).utcoffset().total_seconds())

    first = current = offset(start)
    changes, day = [], start
    while day < end:
        following = min(day + timedelta(days=1), end)
        if offset(following) != current:
            low, high = int(day.timestamp()), int(following.timestamp())
            while high - low > 1:  # the first second on the new offset
                middle = (low + high) // 2
                if offset(datetime.fromtimestamp(middle, UTC)) == current:
                    low = middle
                else:
                    high = middle
            current = offset(following)
            changes.append((high, current))
        day = following
    return first, changes


def epoch_sql(dialect: str, column):
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), BigInteger)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)


def local_day_sql(dialect: str, second, zone: ZoneInfo, first: datetime, last: datetime):
    """The local date of an epoch second, with the zone's offsets over [first, last]."""
    first_offset, changes = offset_changes(zone, first, last + timedelta(days=1))
    offset = (case(*[(second < at, before) for (at, _), before in
                     zip(changes, [first_offset] + [o for _, o in changes])],
                   else_=changes[-1][1]) if changes else literal(first_offset))
    # Integer division floors for the non-negative seconds of any real move.
    day_number = (second + offset) // 86400
    if dialect == "sqlite":
        return func.date(day_number * 86400, "unixepoch")
    return literal(EPOCH_DAY) + cast(day_number, Integer)
