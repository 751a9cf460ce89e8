"""Everything a contact's page shows, and the search that finds a contact to merge with.

``contact_card`` checks that the actor may see the contact (``contacts.readable_contact``,
which asks ``rules.funnel``) before reading anything else: its phones, the deals of it the
actor may see (with stage and owner), and its calls (time, direction, outcome, who answered,
talk time, and how it went leg by leg: ``call_story``, one query for the page's calls),
those of deals out of the actor's sight left out. ``find_contacts`` is the merge
form's search, by name or phone, among the contacts the actor may change.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, union
from sqlalchemy.sql import column, table
from sqlmodel import Session, select

from .call_story import CallStory, stories_of
from .contacts import is_named, phones_of, readable_contact
from ..errors import ValidationError
from ..rules.funnel import Actor, can_read_deal
from ..models import Call, Contact, ContactPhone, Deal, Stage, User
from ..rules.phones import normalize_number

CALL_LIMIT = 200
SEARCH_LIMIT = 20
# Names are found through the trigram indexes of migration 0009: a text shorter than a
# trigram gives them nothing to look up, and is matched by a scan.
TRIGRAM_LENGTH = 3
_LIKE_ESCAPE = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})
_contact_name_fts = table("contact_name_fts", column("rowid"), column("name"))


@dataclass(frozen=True)
class ContactDeal:
    deal: Deal
    stage: Stage
    owner_name: str | None


@dataclass(frozen=True)
class ContactCall:
    call: Call
    answered_by: str | None
    story: CallStory | None = None  # how it went leg by leg (None: it rang one seller's phone)

    @property
    def talk_seconds(self) -> int | None:
        call = self.call
        if call.answered_at is None or call.ended_at is None:
            return None
        return max(0, int((call.ended_at - call.answered_at).total_seconds()))


@dataclass(frozen=True)
class ContactCard:
    contact: Contact
    phones: list[ContactPhone]
    named: bool
    deals: list[ContactDeal]
    calls: list[ContactCall]
    more_calls: bool  # older calls than the page shows


def contact_card(session: Session, actor: Actor, contact_id: int) -> ContactCard:
    contact = readable_contact(session, actor, contact_id)
    phones = phones_of(session, contact_id)
    rows = session.exec(select(Deal, Stage, User.name).join(Stage, Stage.id == Deal.stage_id)
                        .outerjoin(User, User.id == Deal.owner_id)
                        .where(Deal.contact_id == contact_id)
                        .order_by(Deal.created_at.desc(), Deal.id.desc())).all()
    shown = [ContactDeal(deal, stage, owner) for deal, stage, owner in rows
             if can_read_deal(actor, owner_id=deal.owner_id, in_unsorted=stage.is_unsorted)]
    # A call of a deal out of sight is that deal's business; a call on no deal is the
    # contact's, seen with it.
    on_shown = or_(Call.deal_id.is_(None), Call.deal_id.in_([row.deal.id for row in shown]))
    calls = session.exec(select(Call, User.name).outerjoin(User, User.id == Call.answered_by_id)
                         .where(Call.contact_id == contact_id, on_shown)
                         .order_by(Call.ringing_at.desc(), Call.id.desc())
                         .limit(CALL_LIMIT + 1)).all()
    stories = stories_of(session, (call for call, _ in calls[:CALL_LIMIT]))
    return ContactCard(contact=contact, phones=phones, named=is_named(contact, phones),
                       deals=shown,
                       calls=[ContactCall(call, name, stories.get(call.id))
                              for call, name in calls[:CALL_LIMIT]],
                       more_calls=len(calls) > CALL_LIMIT)


# --- finding the other contact of a merge -------------------------------------------------


@dataclass(frozen=True)
class FoundContact:
    contact: Contact
    phones: list[ContactPhone]


def find_contacts(session: Session, actor: Actor, text: str, *, region: str,
                  exclude_id: int | None = None, limit: int = SEARCH_LIMIT) -> list[FoundContact]:
    """Contacts whose name holds ``text`` (any letter case) or who have the number ``text``
    reads as, among those the actor may change (``funnel.can_read_contact``, asked here in
    SQL), by name."""
    text = " ".join((text or "").split())
    if not text:
        return []
    if len(text) > 100:
        raise ValidationError("A search is at most 100 characters.", field="q")
    if any(character < " " or character == "\x7f" for character in text):
        raise ValidationError("Search for letters, digits or signs only.", field="q")
    matches = [select(Contact.id).where(func.lower(Contact.name).like(
        "%" + text.lower().translate(_LIKE_ESCAPE) + "%", escape="\\"))]
    if len(text) >= TRIGRAM_LENGTH and session.get_bind().dialect.name == "sqlite":
        # SQLite's lower() folds ASCII only; the FTS5 trigram table folds every alphabet.
        phrase = '"' + text.replace('"', '""') + '"'
        matches = [select(_contact_name_fts.c.rowid).where(_contact_name_fts.c.name
                                                           .match(phrase))]
    try:
        e164 = normalize_number(text, region=region)
    except ValidationError:
        e164 = None
    if e164:
        matches.append(select(ContactPhone.contact_id).where(ContactPhone.e164 == e164))
    query = select(Contact).where(Contact.id.in_(union(*matches)))
    if exclude_id is not None:
        query = query.where(Contact.id != exclude_id)
    if not actor.sees_everything:
        unsorted = select(Stage.id).where(Stage.is_unsorted)
        query = query.where(exists().where(
            Deal.contact_id == Contact.id,
            or_(Deal.owner_id == actor.user_id,
                and_(Deal.owner_id.is_(None), Deal.stage_id.in_(unsorted)))))
    found = list(session.exec(query.order_by(Contact.name, Contact.id).limit(limit)))
    phones: dict[int, list[ContactPhone]] = {contact.id: [] for contact in found}
    for phone in session.exec(select(ContactPhone).where(ContactPhone.contact_id
                                                         .in_(list(phones)))
                              .order_by(ContactPhone.id)):
        phones[phone.contact_id].append(phone)
    return [FoundContact(contact, phones[contact.id]) for contact in found]
