"""Editing a contact: its name, company and e-mail, its phones added and removed.

Whoever may work one of the contact's deals may edit it (``rules.funnel``). A change to a
field is one conditional UPDATE on the value the form showed, so two people editing the same
contact each change what they changed, and the second to change the same field is told,
never overwrites unseen. Once the contact has a name, its deals still titled by its number
(the PBX's title for a caller it did not know) take the name: ``retitle_number_deals``.

A number belongs to one contact: one that another contact has already is refused (the same
customer twice is merged, ``contact_merge``). Numbers are normalised to E.164 as everywhere
(``rules.phones``) and kept as typed too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import text, update
from sqlmodel import Session, select

from .contacts import (
    MAX_PHONES, call_deal_title, changeable_contact, clean_company, clean_name, is_named,
    number_titles, phones_of,
)
from ..errors import Conflict, NotFound, ValidationError
from ..rules.addresses import clean_email
from ..rules.funnel import Actor
from .journal import audit
from ..models import Contact, ContactPhone, Deal, utcnow
from ..rules.phones import normalize_number

FIELDS = ("name", "company", "email")


def update_contact(session: Session, actor: Actor, contact_id: int, *, name: str,
                   company: str | None = None, email: str | None = None,
                   shown: Mapping[str, str | None] | None = None,
                   now: datetime | None = None) -> Contact:
    """Set the contact's name, company and e-mail. ``shown``: the values the form showed
    (None: whatever they are now); a field changed since by someone else refuses the edit."""
    now = now or utcnow()
    contact = changeable_contact(session, actor, contact_id)
    wanted = {"name": clean_name(name), "company": clean_company(company),
              "email": clean_email(email)}
    seen = {field: getattr(contact, field) for field in FIELDS}
    if shown is not None:
        seen = {field: (shown.get(field) or "").strip() or None for field in FIELDS}
    # What this user changed, of what they saw: fields they left alone are not written.
    changes = {field: value for field, value in wanted.items() if value != seen[field]}
    if not changes:
        return contact
    result = session.exec(
        update(Contact).where(Contact.id == contact_id,
                              *(getattr(Contact, field).is_not_distinct_from(seen[field])
                                for field in changes))
        .values(updated_at=now, **changes).execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise Conflict("Someone else changed this contact meanwhile; reload the page and try "
                       "again.")
    session.refresh(contact)
    audit(session, actor, "contact", contact_id, "update",
          {"before": {field: seen[field] for field in changes}, "after": changes}, at=now)
    if "name" in changes:
        retitle_number_deals(session, actor, contact, now=now)
    return contact


def retitle_number_deals(session: Session, actor: Actor, contact: Contact, *,
                         phones: Iterable[ContactPhone] | None = None,
                         now: datetime | None = None) -> list[int]:
    """Deals of a named contact still titled by one of its numbers take its name, as a new
    call's deal would (``deals.deal_for_caller``); any other title is someone's choice and
    stays. Whoever may edit the contact renames them all, other sellers' deals too: the
    title only says who the customer is. Returns the renamed deals' ids."""
    now = now or utcnow()
    phones = list(phones_of(session, contact.id) if phones is None else phones)
    if not phones or not is_named(contact, phones):
        return []
    title = call_deal_title(contact.name)
    old = number_titles(phones) - {title}
    ids = list(session.exec(select(Deal.id).where(Deal.contact_id == contact.id,
                                                  Deal.title.in_(old)).order_by(Deal.id)))
    if not ids:
        return []
    # The version moves on: a card open on the old title must not write it back.
    session.exec(update(Deal).where(Deal.id.in_(ids), Deal.title.in_(old))
                 .values(title=title, updated_at=now, version=Deal.version + 1)
                 .execution_options(synchronize_session=False))
    for deal_id in ids:
        audit(session, actor, "deal", deal_id, "retitle",
              {"title": title, "contact": contact.id}, at=now)
    return ids


def lock_number(session: Session, e164: str) -> None:
    """Serialise with a first call from the same number (``deals.deal_for_caller`` takes the
    same lock), so the number cannot be given to two contacts at once on PostgreSQL (SQLite
    writes one at a time)."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                     params={"key": "caller:" + e164})


def add_contact_phone(session: Session, actor: Actor, contact_id: int, raw: str, *,
                      region: str, now: datetime | None = None) -> ContactPhone:
    now = now or utcnow()
    contact = changeable_contact(session, actor, contact_id)
    raw = (raw or "").strip()
    if not raw:
        raise ValidationError("Type the phone number to add.", field="phone")
    e164 = normalize_number(raw, region=region)
    lock_number(session, e164)
    holders = set(session.exec(select(ContactPhone.contact_id).where(ContactPhone.e164 == e164)))
    if contact_id in holders:
        raise ValidationError("This contact has this number already.", field="phone")
    if holders:
        # Not named: the other contact may be another seller's customer.
        raise ValidationError("Another contact has this number; if it is the same customer, "
                              "merge the two contacts.", field="phone")
    if len(phones_of(session, contact_id)) >= MAX_PHONES:
        raise ValidationError("A contact has at most 20 phone numbers.",  # MAX_PHONES
                              field="phone")
    phone = ContactPhone(contact_id=contact_id, raw=raw[:64], e164=e164)
    session.add(phone)
    contact.updated_at = now
    session.flush()
    audit(session, actor, "contact", contact_id, "add_phone", {"e164": e164}, at=now)
    # A named contact's new number may be the one a deal is still titled by.
    retitle_number_deals(session, actor, contact, now=now)
    return phone


def remove_contact_phone(session: Session, actor: Actor, contact_id: int, phone_id: int, *,
                         now: datetime | None = None) -> None:
    now = now or utcnow()
    contact = changeable_contact(session, actor, contact_id)
    phone = session.get(ContactPhone, phone_id)
    if phone is None or phone.contact_id != contact_id:
        raise NotFound("This contact has no such number (any more).")
    session.delete(phone)
    contact.updated_at = now
    session.flush()
    audit(session, actor, "contact", contact_id, "remove_phone", {"e164": phone.e164}, at=now)
