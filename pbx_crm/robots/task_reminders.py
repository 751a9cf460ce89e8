"""Task reminders: when a task falls due, its deal's owner hears of it, once.

The robots' scheduler runs ``remind_due_tasks`` on its pass clock (``robot_pass_seconds``).
Each batch is one transaction that claims the open tasks due by now and not reminded yet, and
writes for each a notification (the CRM's notifications page, which says it from the task in
the reader's language) and an event on the stream to the owner's browsers (``task_due``,
``funnel.events``). The claim is a conditional ``UPDATE .. SET reminded_at`` on rows first
locked with SKIP LOCKED on PostgreSQL: two schedulers on one database take different tasks,
and one that meets a task the other reminded leaves it. SQLite runs one writer at a time.
E-mails go out after the commit, to owners with an address when a mailer is set, at most once
(a crash between the commit and the mail loses the mail, never sends it twice), as the robots'
mails do, each in its owner's language (``users.language``).

A task is its deal owner's: one on a deal nobody owns (the Unsorted queue) or whose owner is
no longer active waits, and is reminded once someone takes the deal, if it is still open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text, update
from sqlmodel import Session, select

from ..config import Settings
from ..db import transaction
from ..errors import CrmError
from ..enums import TaskKind
from ..funnel import events
from ..models import Deal, Notification, Task, User, utcnow
from ..people.language import Words, catalog
from ..people.mailer import mail_enabled, send_mail

log = logging.getLogger(__name__)

# The notification's kind and the stream event's.
TASK_DUE = "task_due"
BATCH = 200
# Literal, as in the partial index ix_tasks_to_remind, so that SQLite can use it.
_NOT_REMINDED = text("tasks.done_at IS NULL AND tasks.reminded_at IS NULL")


@dataclass(frozen=True)
class Mail:
    to: str
    name: str
    subject: str
    body: str


@dataclass
class ReminderReport:
    reminded: int = 0
    mailed: int = 0
    mail_failures: int = 0
    task_ids: list[int] = field(default_factory=list)


def remind_due_tasks(engine, settings: Settings, *, now: datetime | None = None,
                     batch: int = BATCH) -> ReminderReport:
    """Remind the owners of every task due by ``now`` that was not reminded yet."""
    now = now or utcnow()
    report = ReminderReport()
    while True:
        with transaction(engine) as session:
            task_ids, mails = remind_batch(session, settings, now=now, limit=batch)
        report.reminded += len(task_ids)
        report.task_ids += task_ids
        for mail in mails:
            try:
                send_mail(settings, to=mail.to, to_name=mail.name, subject=mail.subject,
                          body=mail.body)
                report.mailed += 1
            except CrmError as error:
                report.mail_failures += 1
                log.warning("task reminder not mailed: %s", error.message)
        if len(task_ids) < batch:
            return report


def remind_batch(session: Session, settings: Settings, *, now: datetime,
                 limit: int = BATCH) -> tuple[list[int], list[Mail]]:
    """Claim up to ``limit`` due tasks and write their reminders in ``session``'s
    transaction; returns the tasks claimed and the mails to send once it has committed."""
    due = (select(Task.id).join(Deal, Deal.id == Task.deal_id)
           .join(User, User.id == Deal.owner_id)
           .where(_NOT_REMINDED, Task.due_at <= now, User.active)
           .order_by(Task.due_at, Task.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(of=Task, skip_locked=True)
    candidates = list(session.exec(due))
    if not candidates:
        return [], []
    claimed = list(session.exec(
        update(Task).where(Task.id.in_(candidates), _NOT_REMINDED).values(reminded_at=now)
        .returning(Task.id).execution_options(synchronize_session=False)).scalars())
    rows = session.exec(select(Task, Deal, User).join(Deal, Deal.id == Task.deal_id)
                        .join(User, User.id == Deal.owner_id)
                        .where(Task.id.in_(claimed)).order_by(Task.due_at, Task.id)).all()
    mails, events_out = [], []
    for task, deal, owner in rows:
        body = f"Task due: {task.title} (deal #{deal.id} “{deal.title}”)"
        session.add(Notification(user_id=owner.id, kind=TASK_DUE, body=body, deal_id=deal.id,
                                 task_id=task.id, created_at=now))
        events_out.append(events.event_row(
            TASK_DUE, owner.id, deal_id=deal.id, linkedid=None, now=now,
            payload={"task_id": task.id, "title": task.title, "deal_id": deal.id,
                     "due_at": task.due_at.isoformat() if task.due_at else None}))
        if mail_enabled(settings) and owner.email:
            mails.append(_mail(settings, owner, task, deal))
    events.emit_rows(session, events_out)
    return [task.id for task, _, _ in rows], mails


def _mail(settings: Settings, owner: User, task: Task, deal: Deal) -> Mail:
    """The reminder in its owner's language; a callback task named by its number and
    missed calls, as the pages name it."""
    say = catalog(owner.language)
    zone = ZoneInfo(owner.time_zone or settings.time_zone)
    due = task.due_at.astimezone(zone).strftime("%Y-%m-%d %H:%M") if task.due_at else ""
    title = task.title
    if task.kind == TaskKind.CALLBACK.value and task.phone:
        calls = task.missed_calls or 1
        title = (say.ngettext("Call back %(number)s (%(num)d missed call)",
                              "Call back %(number)s (%(num)d missed calls)", calls)
                 % {"number": task.phone, "num": calls} if calls > 1
                 else say.gettext("Call back %(number)s") % {"number": task.phone})
    body = Words("%(title)s\n\nDue: %(due)s (%(zone)s)\nDeal #%(deal_id)s: %(deal)s\n\n"
                 "Mark it done on the Tasks page of pbx-crm once it is done.\n",
                 title=title, due=due, zone=zone.key, deal_id=deal.id, deal=deal.title)
    subject = Words("Task due: %(title)s", title=title)
    return Mail(owner.email, owner.name, f"[pbx-crm] {subject.said(say.gettext)}",
                body.said(say.gettext))
