"""The CRM's fixed vocabularies, stored as short strings (see the CHECK constraints in models).

A module of its own so the pure rule modules can use them without importing the database.
"""

import enum


class Role(str, enum.Enum):
    SELLER = "seller"
    HEAD = "head"


class StageKind(str, enum.Enum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class DealSource(str, enum.Enum):
    MANUAL = "manual"
    CALL = "call"
    POPUP = "popup"


class Priority(int, enum.Enum):
    LOW = 0
    NORMAL = 1
    HIGH = 2


class CallDirection(str, enum.Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class Disposition(str, enum.Enum):
    ANSWERED = "answered"
    MISSED = "missed"
    ABANDONED = "abandoned"
    BUSY = "busy"
    FAILED = "failed"


# A call nobody answered for the customer: it rang out (missed) or the caller gave up waiting
# in a queue (abandoned). The one definition of a missed call, in Python and in SQL.
MISSED_DISPOSITIONS = (Disposition.MISSED.value, Disposition.ABANDONED.value)


def is_missed_inbound(direction: str, disposition: str | None) -> bool:
    """A customer's call that ended missed or abandoned: what leaves a callback to make."""
    return direction == CallDirection.INBOUND.value and disposition in MISSED_DISPOSITIONS


class TimelineKind(str, enum.Enum):
    CREATED = "created"
    NOTE = "note"
    CALL = "call"
    STAGE_MOVE = "stage_move"
    ASSIGNMENT = "assignment"
    ROBOT = "robot"
    TASK = "task"


class TaskKind(str, enum.Enum):
    MANUAL = "manual"
    CALLBACK = "callback"
    ROBOT = "robot"


class RobotRunStatus(str, enum.Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class NudgeAnswer(str, enum.Enum):
    MOVED_ON = "moved_on"
    LOWER_PRIORITY = "lower_priority"
    SNOOZE = "snooze"
