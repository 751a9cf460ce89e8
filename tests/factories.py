"""Test data built through the services, the same way users build it, and read back.

Times are fixed (``at(minutes)`` after a Monday morning) and passed to the services' ``now=``,
so a test can say exactly when a deal entered a stage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from pbx_crm.funnel import contacts, deals, pipelines
from pbx_crm.people import users
from pbx_crm.enums import DealSource
from pbx_crm.rules.funnel import Actor
from pbx_crm.models import AuditEntry, StageHistory, TimelineEntry

ADMIN = Actor.system("cli")
PBX = Actor.system("pbx")
PASSWORD = "correct horse battery"
SELLER_FUNNEL = [("Opportunity", "open"), ("Commercial proposal", "open"),
                 ("Document coordination", "open"), ("Signature and payment", "open"),
                 ("Implementation", "open"), ("Closing", "open"),
                 ("Won", "won"), ("Lost", "lost")]
MONDAY_MORNING = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


def at(minutes: int = 0) -> datetime:
    return MONDAY_MORNING + timedelta(minutes=minutes)


def make_pipeline(session, name="Sales", stages=SELLER_FUNNEL, currency="IDR", **kw):
    return pipelines.create_pipeline(session, ADMIN, name=name, stages=stages,
                                     currency=currency, **kw)


def stage_named(session, pipeline, name):
    return next(s for s in pipelines.stages_of(session, pipeline.id) if s.name == name)


def stages_by_name(session, pipeline) -> dict:
    return {s.name: s for s in pipelines.stages_of(session, pipeline.id)}


def make_user(session, login, role="seller", extensions=(), name=None):
    user = users.create_user(session, ADMIN, login=login, name=name or login.title(),
                             password=PASSWORD, role=role, extensions=extensions)
    return Actor.of(user)


def make_contact(session, name="Budi Santoso", phones=("+62 812-3456-7890",), region="ID"):
    return contacts.create_contact(session, ADMIN, name=name, phones=phones, region=region)


def make_deal(session, actor, title="Website redesign", **kw):
    return deals.create_deal(session, actor, title=title, **kw)


def make_unsorted_deal(session, title="Call from +62 812-3456-7890", **kw):
    """A deal the PBX made for a caller: in Unsorted, nobody's yet."""
    return deals.create_deal(session, PBX, title=title, source=DealSource.CALL.value, **kw)


# --- reading back what the services wrote -------------------------------------------------


def history_of(session, deal) -> list[StageHistory]:
    return deals.history_of(session, ADMIN, deal.id)


def timeline_of(session, deal) -> list[TimelineEntry]:
    return list(session.exec(select(TimelineEntry).where(TimelineEntry.deal_id == deal.id)
                             .order_by(TimelineEntry.id)))


def audit_of(session, entity: str, entity_id: int) -> list[AuditEntry]:
    return list(session.exec(select(AuditEntry).where(AuditEntry.entity == entity,
                                                      AuditEntry.entity_id == entity_id)
                             .order_by(AuditEntry.id)))
