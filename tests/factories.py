"""Test data built through the services, the same way users build it."""

from __future__ import annotations

from pbx_crm import contacts, deals, pipelines, users
from pbx_crm.funnel import Actor

ADMIN = Actor.system("cli")
PBX = Actor.system("pbx")
PASSWORD = "correct horse battery"
SELLER_FUNNEL = [("Opportunity", "open"), ("Commercial proposal", "open"),
                 ("Document coordination", "open"), ("Signature and payment", "open"),
                 ("Implementation", "open"), ("Closing", "open"),
                 ("Won", "won"), ("Lost", "lost")]


def make_pipeline(session, name="Sales", stages=SELLER_FUNNEL, currency="IDR", **kw):
    return pipelines.create_pipeline(session, ADMIN, name=name, stages=stages,
                                     currency=currency, **kw)


def stage_named(session, pipeline, name):
    return next(s for s in pipelines.stages_of(session, pipeline.id) if s.name == name)


def make_user(session, login, role="seller", extensions=(), name=None):
    user = users.create_user(session, ADMIN, login=login, name=name or login.title(),
                             password=PASSWORD, role=role, extensions=extensions)
    return Actor.of(user)


def make_contact(session, name="Budi Santoso", phones=("+62 812-3456-7890",), region="ID"):
    return contacts.create_contact(session, ADMIN, name=name, phones=phones, region=region)


def make_deal(session, actor, title="Website redesign", **kw):
    return deals.create_deal(session, actor, title=title, **kw)
