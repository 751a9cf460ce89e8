"""A deal's tasks: what someone has to do next (call back, send the proposal).

Plain functions taking a session and an ``Actor``, like the deal services: whoever may work
the deal may list, add and finish its tasks (``funnel.ensure_can_change_deal``). Finishing a
task writes a line on the deal's timeline. The deal card, the Tasks page (``task_list``
reads it) and the robots' "create a task" action add tasks through ``add_task``.

The call path keeps a deal's callback task (``calls`` calls these): a missed call opens it or,
when one is open, counts one more call on it (``note_missed_call``); an answered call of the
deal closes it, for the customer was reached (``close_callback``). One statement each, on the
unique index of a deal's open callback task, so two hangups recorded at once still leave one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from .deals import load_deal
from ..enums import TaskKind, TimelineKind
from ..errors import Conflict, NotFound, ValidationError
from ..rules.funnel import Actor, ensure_can_change_deal, ensure_can_read_deal
from .journal import audit, timeline
from ..models import Call, Deal, Task, utcnow
from ..people.language import Words

TITLE_LENGTH = 200
# A missed call is to be returned within this.
CALLBACK_DUE = timedelta(minutes=15)
PBX = Actor.system("pbx")
# Literal, as in the partial unique index, so that SQLite can use it.
_OPEN_CALLBACK = text("kind = 'callback' AND done_at IS NULL")


def tasks_of(session: Session, actor: Actor, deal_id: int) -> list[Task]:
    """Open tasks first (soonest due first), then the finished ones."""
    deal, stage = load_deal(session, deal_id)
    ensure_can_read_deal(actor, deal, stage)
    tasks = session.exec(select(Task).where(Task.deal_id == deal_id).order_by(Task.id)).all()
    far = datetime.max.replace(tzinfo=utcnow().tzinfo)
    return sorted(tasks, key=lambda t: (t.done_at is not None, t.due_at or far, t.id))


def add_task(session: Session, actor: Actor, deal_id: int, *, title: str,
             due_at: datetime | None = None, kind: TaskKind = TaskKind.MANUAL,
             now: datetime | None = None) -> Task:
    """A task on the deal for its owner (an Unsorted deal's waits for whoever takes it);
    ``kind`` ROBOT for the robots' "create a task" action."""
    now = now or utcnow()
    deal, stage = load_deal(session, deal_id)
    ensure_can_change_deal(actor, deal, stage)
    title = " ".join((title or "").split())
    if not title:
        raise ValidationError("A task needs a title.", field="title")
    if len(title) > TITLE_LENGTH:
        raise ValidationError("A task title is at most 200 characters.", field="title")
    if due_at is not None and due_at.tzinfo is None:
        raise ValidationError("A due time needs a time zone.", field="due_at")
    if kind is TaskKind.CALLBACK:
        raise ValidationError("Callback tasks come from missed calls.", field="kind")
    task = Task(deal_id=deal_id, title=title, kind=kind.value, due_at=due_at,
                assignee_id=deal.owner_id or actor.user_id, created_by_id=actor.user_id,
                created_at=now)
    session.add(task)
    session.flush()
    audit(session, actor, "task", task.id, "create",
          {"deal": deal_id, "title": title, "kind": kind.value}, at=now)
    return task


def complete_task(session: Session, actor: Actor, task_id: int, *,
                  now: datetime | None = None) -> Task:
    now = now or utcnow()
    task = session.get(Task, task_id)
    if task is None or task.deal_id is None:
        raise NotFound("This task does not exist (any more).")
    deal, stage = load_deal(session, task.deal_id)
    ensure_can_change_deal(actor, deal, stage)
    # Conditional, so two clicks (or two colleagues) finish it once.
    result = session.exec(update(Task).where(Task.id == task_id, Task.done_at.is_(None))
                          .values(done_at=now, done_by_id=actor.user_id)
                          .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise Conflict("This task is done already.")
    session.refresh(task)
    session.exec(update(Deal).where(Deal.id == deal.id).values(last_activity_at=now)
                 .execution_options(synchronize_session=False))
    timeline(session, actor, deal.id, TimelineKind.TASK, body=f"Done: {task.title}", at=now,
             data={"task_id": task.id},
             say=Words("Done: %(title)s", title=title_words(task.kind, task.title, task.phone)))
    audit(session, actor, "task", task.id, "done", at=now)
    return task


# --- the callback task the call path keeps ----------------------------------------------------


def title_words(kind: str, title: str, phone: str | None) -> Words | str:
    """A task's title as a page says it: a callback task by its number, in the reader's
    words; any other task by the title someone gave it."""
    if kind == TaskKind.CALLBACK.value and phone:
        return Words("Call back %(number)s", number=phone)
    return title


def callback_title(number: str, missed_calls: int, disposition: str = "missed") -> str:
    """The stored (English) title, for the export and the CLI; the web pages say it in the
    user's language from ``phone``, ``missed_calls`` and ``last_missed_at``."""
    calls = f"{disposition} call" if missed_calls == 1 else f"{missed_calls} missed calls"
    return f"Call back {number} ({calls})"[:TITLE_LENGTH]


def _upsert(session: Session):
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql"
            else sqlite.insert)(Task.__table__)


def note_missed_call(session: Session, call: Call, *, now: datetime) -> int:
    """A missed (or abandoned) inbound call of a deal: open its callback task, for the deal's
    owner (none: it waits in the Unsorted queue), due in ``CALLBACK_DUE``; or, when one is
    open, count this call on it (the latest call and time, the number it came from; the due
    time stays, or moves sooner). Returns the task's id."""
    deal_owner = session.connection().execute(
        select(Deal.owner_id).where(Deal.id == call.deal_id)).scalar()
    number = (call.caller_e164 or call.caller_raw or "")[:32]
    tasks = Task.__table__
    insert = _upsert(session).values(
        deal_id=call.deal_id, assignee_id=deal_owner, kind=TaskKind.CALLBACK.value,
        title=callback_title(number, 1, call.disposition), due_at=now + CALLBACK_DUE,
        call_id=call.id, created_at=now, phone=number, missed_calls=1, last_missed_at=now)
    new = insert.excluded
    statement = insert.on_conflict_do_update(
        index_elements=[tasks.c.deal_id], index_where=_OPEN_CALLBACK,
        set_={"missed_calls": tasks.c.missed_calls + 1, "last_missed_at": new.last_missed_at,
              "call_id": new.call_id, "phone": new.phone,
              "assignee_id": case((tasks.c.assignee_id.is_(None), new.assignee_id),
                                  else_=tasks.c.assignee_id),
              "due_at": case((tasks.c.due_at.is_(None), new.due_at),
                             (new.due_at < tasks.c.due_at, new.due_at),
                             else_=tasks.c.due_at)},
    ).returning(tasks.c.id, tasks.c.missed_calls)
    task_id, missed_calls = session.connection().execute(statement).one()
    if missed_calls > 1:
        session.connection().execute(update(tasks).where(tasks.c.id == task_id).values(
            title=callback_title(number, missed_calls)))
    return task_id


def close_callback(session: Session, call: Call, *, now: datetime) -> int | None:
    """The customer was reached (an answered call of the deal, either way): the deal's open
    callback task is done, written on the timeline as finishing it by hand is. Returns the
    task's id, None when none was open."""
    tasks = Task.__table__
    closed = session.connection().execute(
        update(tasks).where(tasks.c.deal_id == call.deal_id, _OPEN_CALLBACK)
        .values(done_at=now).returning(tasks.c.id, tasks.c.title, tasks.c.phone)).first()
    if closed is None:
        return None
    task_id, title, phone = closed
    timeline(session, PBX, call.deal_id, TimelineKind.TASK, body=f"Done: {title}", at=now,
             call_id=call.id, data={"task_id": task_id, "reached_by_call": call.id},
             say=Words("Done: %(title)s",
                       title=title_words(TaskKind.CALLBACK.value, title, phone)))
    audit(session, PBX, "task", task_id, "done", {"reached_by_call": call.id}, at=now)
    return task_id
