"""The "New deal" form's service: a deal for an existing contact, or for a new one.

The contact is found by phone number (one indexed lookup); a number nobody has makes a new
contact with the name given. A number of another seller's customer is refused before
anything about that contact is read out (``contacts.use_contact``), so the form can neither
take a customer nor look one up. Everything happens in the caller's transaction, so a
refused deal leaves no stray contact behind.
"""

from __future__ import annotations

from sqlmodel import Session

from . import deals
from .contacts import (
    contacts_with_number, create_contact, find_contact_by_number, use_contact,
)
from ..errors import ValidationError
from ..rules.funnel import Actor
from ..models import Deal
from ..rules.phones import normalize_number


def create_deal_with_contact(session: Session, actor: Actor, *, title: str, phone: str,
                             contact_name: str, region: str, amount_minor: int = 0,
                             pipeline_id: int | None = None, stage_id: int | None = None,
                             owner_id: int | None = None) -> Deal:
    phone, contact_name = (phone or "").strip(), " ".join((contact_name or "").split())
    contact = None
    if phone:
        e164 = normalize_number(phone, region=region)
        # Before the one-contact check, whose refusal names the contacts sharing the number.
        for found in contacts_with_number(session, e164):
            use_contact(session, actor, found.id)
        contact = find_contact_by_number(session, e164)
    if contact is None:
        if not contact_name and phone:
            raise ValidationError("Nobody has this number yet: give the new contact's name.",
                                  field="contact_name")
        if not contact_name:
            raise ValidationError("Give the contact's phone number, or the name of a new "
                                  "contact.", field="contact_name")
        contact = create_contact(session, actor, name=contact_name,
                                 phones=[phone] if phone else [], region=region,
                                 owner_id=owner_id)
    return deals.create_deal(session, actor, title=title, pipeline_id=pipeline_id,
                             stage_id=stage_id, contact_id=contact.id, amount_minor=amount_minor,
                             owner_id=owner_id)
