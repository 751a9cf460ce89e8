"""Contacts and their numbers: typed as people type them, found again by the caller's number."""

import pytest
from sqlmodel import func, select

from factories import ADMIN, make_contact
from pbx_crm.funnel import contacts
from pbx_crm.errors import NumberConflict, ValidationError
from pbx_crm.models import Contact

MOBILE = "+6281234567890"


def e164s(session, contact) -> list[str]:
    return [phone.e164 for phone in contacts.phones_of(session, contact.id)]


def contact_count(session) -> int:
    return session.exec(select(func.count()).select_from(Contact)).one()


def test_numbers_typed_in_different_formats_are_kept_as_typed_and_in_e164(session):
    contact = make_contact(session, phones=["0812-3456-7890", "(021) 5550123",
                                            "+49 30 12345678", "+62 812 3456 7890"])
    phones = contacts.phones_of(session, contact.id)
    assert [(p.raw, p.e164) for p in phones] == [
        ("0812-3456-7890", MOBILE),  # the fourth number is the same mobile: kept once
        ("(021) 5550123", "+62215550123"),
        ("+49 30 12345678", "+493012345678"),
    ]


def test_a_contact_is_refused_whole_for_a_number_that_is_no_number(session):
    with pytest.raises(ValidationError, match="12ab") as refused:
        make_contact(session, phones=[MOBILE, "12ab"])
    assert refused.value.field == "phone"
    assert contact_count(session) == 0


def test_a_contact_needs_a_name_and_a_plausible_email(session):
    with pytest.raises(ValidationError, match="name"):
        make_contact(session, name="  ")
    with pytest.raises(ValidationError, match="e-mail"):
        contacts.create_contact(session, ADMIN, name="Siti", email="siti@", region="ID")
    assert contact_count(session) == 0


def test_a_number_finds_nobody_its_one_contact_or_a_conflict(session):
    assert contacts.find_contact_by_number(session, MOBILE) is None
    siti = make_contact(session, name="Siti", phones=["0812 3456 7890"])
    assert contacts.find_contact_by_number(session, MOBILE) == siti
    joko = make_contact(session, name="Joko", phones=[MOBILE])
    with pytest.raises(NumberConflict, match="2 contacts") as refused:
        contacts.find_contact_by_number(session, MOBILE)
    assert refused.value.contact_ids == [siti.id, joko.id]
    assert refused.value.status == 409


# --- importing a phone book ---------------------------------------------------------------

PHONE_BOOK = [
    {"name": "Siti Rahma", "phone": "0812-3456-7890", "company": "PT Maju"},
    {"Name": "Joko", "Phones": "(021) 5550123; +49 30 12345678", "email": "joko@example.com"},
]


def test_a_clean_phone_book_is_imported_whole(session):
    report = contacts.import_contacts(session, ADMIN, PHONE_BOOK, region="ID")
    assert (report.ok, report.imported, report.rejected) == (True, 2, [])
    joko = contacts.find_contact_by_number(session, "+493012345678")
    assert (joko.name, joko.email) == ("Joko", "joko@example.com")
    assert e164s(session, joko) == ["+62215550123", "+493012345678"]


BAD_ROWS = [
    {"name": "No Phone", "phone": ""},
    {"name": "Bad Phone", "phone": "call me maybe"},
    {"name": "", "phone": "0813 1111 2222"},
    {"name": "Siti again", "phone": "+62 812 3456 7890"},
]


def test_one_bad_row_and_nothing_is_imported_with_every_bad_line_reported(session):
    report = contacts.import_contacts(session, ADMIN, PHONE_BOOK + BAD_ROWS, region="ID")
    assert (report.ok, report.imported) == (False, 0)
    assert [line for line, _ in report.rejected] == [4, 5, 6, 7]  # line 1 is the header
    reasons = dict(report.rejected)
    assert reasons[4] == "no phone number"
    assert "call me maybe" in reasons[5]
    assert "name" in reasons[6]
    assert reasons[7] == f"{MOBILE} is already on line 2 of this file"
    assert contact_count(session) == 0


def test_skipping_bad_rows_imports_the_good_ones(session):
    report = contacts.import_contacts(session, ADMIN, PHONE_BOOK + BAD_ROWS, region="ID",
                                      skip_invalid=True)
    assert (report.ok, report.imported, len(report.rejected)) == (False, 2, 4)
    assert contact_count(session) == 2


def test_a_number_that_belongs_to_a_contact_already_refuses_the_row(session):
    siti = make_contact(session, name="Siti", phones=[MOBILE])
    report = contacts.import_contacts(session, ADMIN, PHONE_BOOK, region="ID")
    assert report.rejected == [(2, f"{MOBILE} already belongs to contact #{siti.id}")]
    assert contact_count(session) == 1
