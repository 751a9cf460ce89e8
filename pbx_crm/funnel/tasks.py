"""A deal's tasks: what someone has to do next (call back, send the proposal).

Plain functions taking a session and an ``Actor``, like the deal services: whoever may work
the deal may list, add and finish its tasks (``funnel.ensure_can_change_deal``). Finishing a
task writes a line on the deal's timeline.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, select

from .deals import load_deal
from ..enums import TaskKind, TimelineKind
from ..errors import Conflict, NotFound, ValidationError
from ..rules.funnel import Actor, ensure_can_change_deal, ensure_can_read_deal
from .journal import audit, timeline
from ..models import Deal, Task, utcnow


def tasks_of(session: Session, actor: Actor, deal_id: int) -> list[Task]:
    """Open tasks first (soonest due first), then the finished ones."""
    deal, stage = load_deal(session, deal_id)
    ensure_can_read_deal(actor, deal, stage)
    tasks = session.exec(select(Task).where(Task.deal_id == deal_id).order_by(Task.id)).all()
    far = datetime.max.replace(tzinfo=utcnow().tzinfo)
    return sorted(tasks, key=lambda t: (t.done_at is not None, t.due_at or far, t.id))


def add_task(session: Session, actor: Actor, deal_id: int, *, title: str,
             due_at: datetime | None = None, now: datetime | None = None) -> Task:
    now = now or utcnow()
    deal, stage = load_deal(session, deal_id)
    ensure_can_change_deal(actor, deal, stage)
    title = " ".join((title or "").split())
    if not title:
        raise ValidationError("A task needs a title.", field="title")
    if len(title) > 200:
        raise ValidationError("A task title is at most 200 characters.", field="title")
    if due_at is not None and due_at.tzinfo is None:
        raise ValidationError("A due time needs a time zone.", field="due_at")
    task = Task(deal_id=deal_id, title=title, kind=TaskKind.MANUAL.value, due_at=due_at,
                assignee_id=deal.owner_id or actor.user_id, created_by_id=actor.user_id,
                created_at=now)
    session.add(task)
    session.flush()
    audit(session, actor, "task", task.id, "create", {"deal": deal_id, "title": title}, at=now)
    return task


def complete_task(session: Session, actor: Actor, task_id: int, *,
                  now: datetime | None = None) -> Task:
    now = now or utcnow()
    task = session.get(Task, task_id)
    if task is None or task.deal_id is None:
        raise NotFound(f"No task #{task_id}.")
    deal, stage = load_deal(session, task.deal_id)
    ensure_can_change_deal(actor, deal, stage)
    # Conditional, so two clicks (or two colleagues) finish it once.
    result = session.exec(update(Task).where(Task.id == task_id, Task.done_at.is_(None))
                          .values(done_at=now, done_by_id=actor.user_id)
                          .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise Conflict(f"Task “{task.title}” is done already.")
    session.refresh(task)
    session.exec(update(Deal).where(Deal.id == deal.id).values(last_activity_at=now)
                 .execution_options(synchronize_session=False))
    timeline(session, actor, deal.id, TimelineKind.TASK, body=f"Done: {task.title}", at=now,
             data={"task_id": task.id})
    audit(session, actor, "task", task.id, "done", at=now)
    return task
