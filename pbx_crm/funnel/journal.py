"""What the services write beside each change: the audit log and the deal's timeline.

Both are written in the caller's transaction, so a change and its record land together or not
at all. A timeline line a service words is given as ``say`` (``Words``): its English text is
the entry's ``body``, and the words are kept in its ``data`` (``"say"``) so that the deal page
says it in the reader's language (``pbx_crm.people.language``).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from ..enums import TimelineKind
from ..rules.funnel import Actor
from ..models import AuditEntry, TimelineEntry, utcnow
from ..people.language import Words


def audit(session: Session, actor: Actor, entity: str, entity_id: int, action: str,
          changes: dict | None = None, *, at: datetime | None = None) -> None:
    session.add(AuditEntry(at=at or utcnow(), user_id=actor.user_id, actor=actor.name,
                           entity=entity, entity_id=entity_id, action=action,
                           changes=changes or {}))


def timeline(session: Session, actor: Actor, deal_id: int, kind: TimelineKind, *,
             body: str | None = None, data: dict | None = None, call_id: int | None = None,
             robot_run_id: int | None = None, at: datetime | None = None,
             say: Words | None = None) -> TimelineEntry:
    if say is not None:
        body = say.english if body is None else body
        data = {**(data or {}), "say": say.kept()}
    entry = TimelineEntry(deal_id=deal_id, kind=kind.value, created_at=at or utcnow(),
                          author_id=actor.user_id, body=body, data=data, call_id=call_id,
                          robot_run_id=robot_run_id)
    session.add(entry)
    return entry
