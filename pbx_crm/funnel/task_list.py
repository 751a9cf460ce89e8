"""The Tasks page's reading: a user's open tasks by when they fall due, and the ones just done.

A task is the work of its deal's owner, so whose tasks a list holds follows the deal, as the
funnel rules say who may see it (``rules.funnel``): a seller's are the tasks on their own deals
and on the Unsorted deals nobody took yet (the shared queue's callbacks); a head sees every
task and may narrow the list to one seller. "Today" is the user's day in their time zone: in
Jakarta a task due at 00:30 is tomorrow's, even at 23:30 the evening before.

Read by ``webui.routes_tasks``; the deal card and the board read a deal's next task from
``board`` and ``deal_card``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_
from sqlmodel import Session, select

from ..models import Contact, Deal, Stage, Task, User, utcnow
from ..rules.funnel import Actor

# Tasks shown per group; a longer group says how many it left out.
GROUP_LIMIT = 100
DONE_LIMIT = 20
DONE_DAYS = 7


@dataclass(frozen=True)
class TaskLine:
    """A task as the list shows it: with its deal, the deal's owner and contact."""

    task: Task
    deal_title: str
    owner_id: int | None
    owner_name: str | None
    contact_name: str | None
    in_unsorted: bool

    def overdue(self, now: datetime) -> bool:
        return (self.task.done_at is None and self.task.due_at is not None
                and self.task.due_at < now)


@dataclass(frozen=True)
class TaskGroups:
    """Open tasks overdue, due later today, due later (or some day: no due time), and done
    in the last ``DONE_DAYS``; ``left_out`` counts what each group did not show."""

    overdue: list[TaskLine]
    today: list[TaskLine]
    upcoming: list[TaskLine]
    done: list[TaskLine]
    now: datetime
    left_out: dict[str, int] = field(default_factory=dict)

    @property
    def open_count(self) -> int:
        return (len(self.overdue) + len(self.today) + len(self.upcoming)
                + sum(self.left_out.get(name, 0) for name in ("overdue", "today", "upcoming")))


def end_of_day(now: datetime, zone: ZoneInfo) -> datetime:
    """The next midnight in ``zone`` after ``now`` (aware)."""
    local = now.astimezone(zone)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)


def _lines():
    return (select(Task, Deal.title, Deal.owner_id, User.name, Contact.name, Stage.is_unsorted)
            .join(Deal, Deal.id == Task.deal_id)
            .join(Stage, Stage.id == Deal.stage_id)
            .outerjoin(User, User.id == Deal.owner_id)
            .outerjoin(Contact, Contact.id == Deal.contact_id))


def whose(actor: Actor, owner_id: int | None = None) -> list:
    """Conditions on a task's deal: one the actor may see (a seller: their own and the
    Unsorted ones nobody took), of ``owner_id`` when a head narrows the list to one seller."""
    if actor.sees_everything:
        return [] if owner_id is None else [Deal.owner_id == owner_id]
    return [or_(Deal.owner_id == actor.user_id,
                and_(Deal.owner_id.is_(None), Stage.is_unsorted))]


def task_groups(session: Session, actor: Actor, *, zone: ZoneInfo,
                owner_id: int | None = None, now: datetime | None = None,
                limit: int = GROUP_LIMIT) -> TaskGroups:
    """The actor's tasks grouped for the Tasks page (a head's: everyone's, or ``owner_id``'s)."""
    now = now or utcnow()
    tomorrow = end_of_day(now, zone)
    shown = [Task.done_at.is_(None), *whose(actor, owner_id)]
    left_out: dict[str, int] = {}

    def group(name, *conditions, order=(Task.due_at, Task.id), last=limit):
        rows = session.exec(_lines().where(*shown, *conditions).order_by(*order)
                            .limit(last + 1)).all()
        if len(rows) > last:
            left_out[name] = session.exec(
                select(func.count()).select_from(Task).join(Deal, Deal.id == Task.deal_id)
                .join(Stage, Stage.id == Deal.stage_id)
                .where(*shown, *conditions)).one() - last
        return [TaskLine(task, title, owner, owner_name, contact, bool(unsorted))
                for task, title, owner, owner_name, contact, unsorted in rows[:last]]

    overdue = group("overdue", Task.due_at < now)
    today = group("today", Task.due_at >= now, Task.due_at < tomorrow)
    # Dated first, soonest first; then the tasks with no due time, oldest first.
    upcoming = group("upcoming", or_(Task.due_at >= tomorrow, Task.due_at.is_(None)),
                     order=(Task.due_at.is_(None), Task.due_at, Task.id))
    shown[0] = Task.done_at >= now - timedelta(days=DONE_DAYS)
    done = group("done", order=(Task.done_at.desc(), Task.id.desc()), last=DONE_LIMIT)
    left_out.pop("done", None)  # "recently done" is a glance, not a list to page through
    return TaskGroups(overdue=overdue, today=today, upcoming=upcoming, done=done, now=now,
                      left_out=left_out)


def overdue_per_seller(session: Session, *, now: datetime | None = None) -> dict[int, int]:
    """Open tasks past their due time per deal owner (the seller), for a head's view."""
    now = now or utcnow()
    rows = session.exec(select(Deal.owner_id, func.count()).select_from(Task)
                        .join(Deal, Deal.id == Task.deal_id)
                        .where(Task.done_at.is_(None), Task.due_at < now,
                               Deal.owner_id.is_not(None))
                        .group_by(Deal.owner_id)).all()
    return dict(rows)
