"""A user's notifications (robot nudges, assignments, tasks fallen due): list them, mark
them read.

The robots and other services write the rows; the web edge shows a user their own and
nothing else. A notification that is not the user's is reported as missing, not as
forbidden, so ids do not reveal what others were told.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, select

from ..enums import RobotRunStatus
from ..errors import NotFound
from ..rules.funnel import Actor
from ..models import Notification, RobotRun, Task, utcnow


def notifications_of(session: Session, actor: Actor, *, limit: int = 100) -> list[Notification]:
    """Newest first, unread or not."""
    return list(session.exec(select(Notification).where(Notification.user_id == actor.user_id)
                             .order_by(Notification.created_at.desc(), Notification.id.desc())
                             .limit(limit)))


def unanswered_nudges(session: Session, found: list[Notification]) -> set[int]:
    """The robot runs behind ``found`` that still wait for a decision (moved on, lower
    priority, snooze), so the list offers those answers on them only."""
    run_ids = {n.robot_run_id for n in found if n.robot_run_id is not None}
    if not run_ids:
        return set()
    return set(session.exec(select(RobotRun.id).where(
        RobotRun.id.in_(run_ids), RobotRun.answer.is_(None),
        RobotRun.status != RobotRunStatus.FAILED.value,
        RobotRun.status != RobotRunStatus.SKIPPED.value)))


def reminded_tasks(session: Session, found: list[Notification]) -> dict[int, Task]:
    """The tasks the reminders among ``found`` are about (task id -> task), so the list
    says each in the reader's language, with the task as it is now."""
    task_ids = {n.task_id for n in found if n.task_id is not None}
    if not task_ids:
        return {}
    return {task.id: task for task in session.exec(select(Task).where(Task.id.in_(task_ids)))}


def unread_count(session: Session, actor: Actor) -> int:
    return session.exec(select(func.count()).select_from(Notification)
                        .where(Notification.user_id == actor.user_id,
                               Notification.read_at.is_(None))).one()


def mark_read(session: Session, actor: Actor, notification_id: int, *,
              now: datetime | None = None) -> Notification:
    notification = session.get(Notification, notification_id)
    if notification is None or notification.user_id != actor.user_id:
        raise NotFound("No notification #%(notification_id)s.",
                       notification_id=notification_id)
    if notification.read_at is None:
        notification.read_at = now or utcnow()
        session.add(notification)
    return notification


def mark_all_read(session: Session, actor: Actor, *, now: datetime | None = None) -> int:
    result = session.exec(update(Notification)
                          .where(Notification.user_id == actor.user_id,
                                 Notification.read_at.is_(None))
                          .values(read_at=now or utcnow())
                          .execution_options(synchronize_session=False))
    return result.rowcount
