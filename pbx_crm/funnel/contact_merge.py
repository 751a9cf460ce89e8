"""Merging two contacts that are the same customer: one is kept, the other folded into it.

A head may merge any two contacts; a seller two that they may both change (``rules.funnel``).
The merged contact's phones, deals and calls move to the kept one and it is deleted, in the
caller's transaction, with an audit entry on both. A number both have (the reason for many a
merge: two contacts sharing a number make its calls a conflict) is kept once. Fields the
kept contact lacks (company, e-mail, notes, the seller it stays with) come from the merged
one; so does the name, when the kept contact had none but its number. Then the deals still
titled by a number take the name (``contact_edit.retitle_number_deals``).

``merge_plan`` says all that beforehand, for the page that asks to confirm.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlmodel import Session, select

from .contact_edit import lock_number, retitle_number_deals
from .contacts import deal_keys, is_named, phones_of
from ..errors import NotFound
from ..rules.funnel import Actor, ensure_can_merge_contacts
from .journal import audit
from ..models import Call, Contact, ContactPhone, Deal, utcnow

FILLED_IN = ("company", "email", "notes", "owner_id")


@dataclass(frozen=True)
class MergePlan:
    kept: Contact
    merged: Contact
    phones_moved: list[ContactPhone]
    phones_shared: list[ContactPhone]  # on both: kept once, on the kept contact
    deals: int
    calls: int
    name: str  # the kept contact's name afterwards


def _load(session: Session, actor: Actor, kept_id: int, merged_id: int, *,
          lock: bool) -> tuple[Contact, Contact]:
    query = select(Contact).where(Contact.id.in_([kept_id, merged_id])).order_by(Contact.id)
    if lock:
        # Both rows, in id order (two merges of the same pair wait, never deadlock); a call
        # attaching to the merged contact meanwhile waits too.
        query = query.with_for_update()
    found = {contact.id: contact for contact in session.exec(query)}
    for contact_id in (kept_id, merged_id):
        if contact_id not in found:
            raise NotFound("No contact #%(contact_id)s; it may have been merged into another "
                           "one.", contact_id=contact_id)
    ensure_can_merge_contacts(actor, deal_keys(session, kept_id), deal_keys(session, merged_id),
                              same=kept_id == merged_id)
    return found[kept_id], found[merged_id]


def _count(session: Session, model, contact_id: int) -> int:
    return session.exec(select(func.count()).select_from(model)
                        .where(model.contact_id == contact_id)).one()


def merge_plan(session: Session, actor: Actor, *, kept_id: int, merged_id: int,
               lock: bool = False) -> MergePlan:
    """What ``merge_contacts`` would do, checked as it would check it; nothing is written."""
    kept, merged = _load(session, actor, kept_id, merged_id, lock=lock)
    kept_phones, merged_phones = phones_of(session, kept_id), phones_of(session, merged_id)
    kept_numbers = {phone.e164 for phone in kept_phones}
    name = kept.name
    if not is_named(kept, kept_phones) and is_named(merged, merged_phones):
        name = merged.name
    return MergePlan(
        kept=kept, merged=merged,
        phones_moved=[p for p in merged_phones if p.e164 not in kept_numbers],
        phones_shared=[p for p in merged_phones if p.e164 in kept_numbers],
        deals=_count(session, Deal, merged_id), calls=_count(session, Call, merged_id),
        name=name)


def merge_contacts(session: Session, actor: Actor, *, kept_id: int, merged_id: int,
                   now: datetime | None = None) -> MergePlan:
    """Fold ``merged_id`` into ``kept_id``; returns what was done."""
    now = now or utcnow()
    plan = merge_plan(session, actor, kept_id=kept_id, merged_id=merged_id, lock=True)
    kept, merged = plan.kept, plan.merged
    for phone in plan.phones_moved:
        lock_number(session, phone.e164)  # a first call from it waits for the merge
    deal_ids = list(session.exec(select(Deal.id).where(Deal.contact_id == merged_id)
                                 .order_by(Deal.id)))
    # A shared number goes first: (contact, number) is unique.
    session.exec(delete(ContactPhone).where(ContactPhone.id.in_([p.id for p in
                                                                 plan.phones_shared])))
    for model in (ContactPhone, Deal, Call):
        session.exec(update(model).where(model.contact_id == merged_id)
                     .values(contact_id=kept_id))
    filled = {field: getattr(merged, field) for field in FILLED_IN
              if getattr(kept, field) is None and getattr(merged, field) is not None}
    if plan.name != kept.name:
        filled["name"] = plan.name
    merged_values = {"name": merged.name, "company": merged.company, "email": merged.email}
    session.delete(merged)
    session.flush()
    session.exec(update(Contact).where(Contact.id == kept_id).values(updated_at=now, **filled))
    phones = phones_of(session, kept_id)
    retitled = retitle_number_deals(session, actor, kept, phones=phones, now=now)
    record = {"merged": merged_id, "merged_contact": merged_values,
              "phones_moved": [p.e164 for p in plan.phones_moved],
              "phones_shared": [p.e164 for p in plan.phones_shared],
              "deals": deal_ids, "calls": plan.calls, "filled_in": sorted(filled),
              "retitled": retitled}
    audit(session, actor, "contact", kept_id, "merge", record, at=now)
    audit(session, actor, "contact", merged_id, "merged_into", {"kept": kept_id}, at=now)
    return plan
