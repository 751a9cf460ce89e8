"""Contacts and their phone numbers: who a caller is.

Numbers are kept as entered and in E.164 (``phones.normalize_number``); "who is calling"
is one indexed lookup on the E.164 form. A number shared by several contacts (an office
switchboard) is reported as a conflict, never attached to whichever contact came first.

Who may see and edit a contact is decided on its deals (``deal_keys``, asked of
``rules.funnel`` by ``readable_contact`` and ``changeable_contact``); the contact's page,
its edits and merges live in ``contact_card``, ``contact_edit`` and ``contact_merge``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlmodel import Session, select

from ..enums import StageKind
from ..errors import CrmError, NotFound, NumberConflict, ValidationError
from ..rules.funnel import (
    Actor, ensure_can_change_contact, ensure_can_read_contact, ensure_can_use_contact,
    sellers_of_customer,
)
from .journal import audit
from ..models import Contact, ContactPhone, Deal, Stage, User
from ..rules.addresses import clean_email
from ..rules import deal_titles
from ..rules.phones import normalize_number

MAX_PHONES = 20

# A deal the PBX opens for a caller is titled after them (``rules.deal_titles``): the
# services and the pages name those titles here.
call_deal_title = deal_titles.call_deal_title
caller_of_call_title = deal_titles.caller_of_call_title


def clean_name(value) -> str:
    """A contact's name, its runs of spaces made one."""
    value = " ".join((value or "").split())
    if not value:
        raise ValidationError("A contact needs a name.", field="name")
    if len(value) > 200:
        raise ValidationError("A name is at most 200 characters.", field="name")
    return value


def clean_company(value) -> str | None:
    value = (value or "").strip()
    if len(value) > 200:
        raise ValidationError("A company name is at most 200 characters.", field="company")
    return value or None


def clean_phones(phones: Iterable[str], *, region: str) -> list[tuple[str, str]]:
    """(as entered, E.164) pairs; duplicates dropped, bad numbers refused by name."""
    pairs: list[tuple[str, str]] = []
    for raw in phones:
        raw = (raw or "").strip()
        if not raw:
            continue
        e164 = normalize_number(raw, region=region)
        if e164 not in {e for _, e in pairs}:
            pairs.append((raw[:64], e164))
    if len(pairs) > MAX_PHONES:
        raise ValidationError("A contact has at most 20 phone numbers.",  # MAX_PHONES
                              field="phone")
    return pairs


def create_contact(session: Session, actor: Actor, *, name: str, phones: Iterable[str] = (),
                   region: str, company: str | None = None, email: str | None = None,
                   owner_id: int | None = None) -> Contact:
    contact = Contact(name=clean_name(name), company=clean_company(company),
                      email=clean_email(email),
                      owner_id=owner_id if owner_id is not None else actor.user_id)
    # Every number is checked before anything is written: a refusal leaves nothing behind.
    pairs = clean_phones(phones, region=region)
    session.add(contact)
    session.flush()
    session.add_all(ContactPhone(contact_id=contact.id, raw=raw, e164=e164)
                    for raw, e164 in pairs)
    session.flush()
    audit(session, actor, "contact", contact.id, "create",
          {"name": contact.name, "phones": [e for _, e in pairs]})
    return contact


def use_contact(session: Session, actor: Actor, contact_id: int) -> Contact:
    """The contact, if ``actor`` may put a deal on it: never another seller's customer for a
    seller (``funnel.sellers_of_customer`` says whose customer it is)."""
    contact = get_contact(session, contact_id)
    if actor.sees_everything:
        return contact
    open_deals = session.exec(select(Deal.owner_id, Stage.is_unsorted)
                              .join(Stage, Stage.id == Deal.stage_id)
                              .where(Deal.contact_id == contact_id,
                                     Stage.kind == StageKind.OPEN.value)).all()
    owner = session.get(User, contact.owner_id) if contact.owner_id is not None else None
    ensure_can_use_contact(actor, sellers_of_customer(
        open_deals, owner.id if owner is not None and owner.active else None))
    return contact


def deal_keys(session: Session, contact_id: int) -> list[tuple[int | None, bool]]:
    """``(owner_id, in_unsorted)`` of each of the contact's deals: what the funnel rules
    decide a contact's visibility on."""
    return [(owner_id, in_unsorted) for owner_id, in_unsorted in session.exec(
        select(Deal.owner_id, Stage.is_unsorted).join(Stage, Stage.id == Deal.stage_id)
        .where(Deal.contact_id == contact_id))]


def get_contact(session: Session, contact_id: int) -> Contact:
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound("No contact #%(contact_id)s; it may have been merged into another one.",
                       contact_id=contact_id)
    return contact


def readable_contact(session: Session, actor: Actor, contact_id: int) -> Contact:
    """The contact, if ``actor`` may see it (``funnel.can_read_contact``), else 403."""
    contact = get_contact(session, contact_id)
    ensure_can_read_contact(actor, deal_keys(session, contact_id))
    return contact


def changeable_contact(session: Session, actor: Actor, contact_id: int) -> Contact:
    """The contact, if ``actor`` may edit it (``funnel.ensure_can_change_contact``)."""
    contact = get_contact(session, contact_id)
    ensure_can_change_contact(actor, deal_keys(session, contact_id))
    return contact


def number_titles(phones: Iterable[ContactPhone]) -> set[str]:
    """The titles that still name a deal by one of these numbers: the bare number (as stored
    or as typed) and the PBX's "Call from <number>"."""
    numbers = {number for phone in phones for number in (phone.e164, phone.raw)}
    return numbers | {call_deal_title(number) for number in numbers}


def is_named(contact: Contact, phones: Iterable[ContactPhone]) -> bool:
    """Whether the contact has a name of its own, not one of its numbers (the PBX names a
    caller it does not know by their number)."""
    return contact.name not in {number for phone in phones
                                for number in (phone.e164, phone.raw)}


def phones_of(session: Session, contact_id: int) -> list[ContactPhone]:
    return list(session.exec(select(ContactPhone).where(ContactPhone.contact_id == contact_id)
                             .order_by(ContactPhone.id)))


def contacts_with_number(session: Session, e164: str) -> list[Contact]:
    return list(session.exec(select(Contact).join(ContactPhone)
                             .where(ContactPhone.e164 == e164).order_by(Contact.id)))


def find_contact_by_number(session: Session, e164: str) -> Contact | None:
    """The one contact with this number, None if nobody has it; several is a conflict."""
    contacts = contacts_with_number(session, e164)
    if len(contacts) > 1:
        names = ", ".join(f"#{c.id} {c.name}" for c in contacts[:5])
        raise NumberConflict(f"{e164} belongs to {len(contacts)} contacts ({names}); "
                             "choose the right one by hand.",
                             contact_ids=[c.id for c in contacts])
    return contacts[0] if contacts else None


# --- importing a phone book ---------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import did: rows taken, and each refused row with its line and reason."""

    imported: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected


PHONE_COLUMNS = ("phone", "phones", "mobile", "work_phone", "home_phone")


def import_contacts(session: Session, actor: Actor, rows: Iterable[Mapping[str, str]], *,
                    region: str, skip_invalid: bool = False, first_line: int = 2,
                    progress=None) -> ImportReport:
    """Check every row, then write all of them, or none.

    A row needs a name and at least one phone (columns ``phone``/``phones``, several numbers
    split by ``;`` or ``,``). A number that already belongs to a contact, or appears twice in
    the file, refuses the row. With rejected rows nothing is written unless ``skip_invalid``;
    the caller's transaction makes it all-or-nothing either way.
    """
    report = ImportReport()
    accepted: list[dict] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=first_line):
        if progress:
            progress(1)
        try:
            accepted.append(_check_import_row(session, row, region, seen, line))
        except CrmError as error:
            report.rejected.append((line, error.message))
    if report.rejected and not skip_invalid:
        return report
    for values in accepted:
        create_contact(session, actor, region=region, **values)
        report.imported += 1
    return report


def _check_import_row(session: Session, row: Mapping[str, str], region: str,
                      seen: dict[str, int], line: int) -> dict:
    row = {(k or "").strip().lower(): (v or "") for k, v in row.items() if k is not None}
    raw_phones = []
    for column in PHONE_COLUMNS:
        raw_phones += [p for p in row.get(column, "").replace(",", ";").split(";") if p.strip()]
    if not raw_phones:
        raise ValidationError("no phone number")
    pairs = clean_phones(raw_phones, region=region)
    values = {"name": clean_name(row.get("name")),
              "company": clean_company(row.get("company")),
              "email": clean_email(row.get("email")),
              "phones": [raw for raw, _ in pairs]}
    for _, e164 in pairs:
        if e164 in seen:
            raise ValidationError(f"{e164} is already on line {seen[e164]} of this file")
        owner = session.exec(select(ContactPhone.contact_id)
                             .where(ContactPhone.e164 == e164)).first()
        if owner is not None:
            raise ValidationError(f"{e164} already belongs to contact #{owner}")
    for _, e164 in pairs:
        seen[e164] = line
    return values
