"""Contacts and their numbers: typed as people type them, found again by the caller's number."""

import pytest
from sqlmodel import func, select

from factories import (
    ADMIN, at, audit_of, make_contact, make_deal, make_pipeline, make_user, stages_by_name,
)
from pbx_crm.funnel import calls, contact_card, contact_edit, contact_merge, contacts, deals
from pbx_crm.errors import Conflict, Forbidden, NotFound, NumberConflict, ValidationError
from pbx_crm.models import Call, Contact, Deal
from pbx_crm.rules import funnel
from pbx_crm.rules.funnel import Actor
from pbx_crm.rules.phones import ExtensionPlan, classify_caller

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


# --- a caller's contact gets a name, a page, and its duplicate ---------------------------
#
# The team: ana and budi sell, hana is the head. A caller the CRM did not know rang from
# +62 811-3770-0991 without a caller name: the PBX made a contact named by the number and an
# Unsorted deal "Call from +6281137700991".

CALLER = "+62 811-3770-0991"
CALLER_E164 = "+6281137700991"
PLAN = ExtensionPlan.parse("100-199")


@pytest.fixture
def team(session):
    pipeline = make_pipeline(session)
    return {"pipeline": pipeline, "stage": stages_by_name(session, pipeline),
            "ana": make_user(session, "ana", extensions=["101"]),
            "budi": make_user(session, "budi", extensions=["102"]),
            "hana": make_user(session, "hana", role="head")}


def ring(session, uniqueid: str, number: str = CALLER, *, name: str = "", minutes: int = 0):
    return calls.record_inbound_call(
        session, uniqueid=uniqueid, linkedid=uniqueid,
        caller=classify_caller(number, region="ID", extensions=PLAN), caller_name=name,
        did=None, create_deals=True, region="ID", now=at(minutes))


def dial(session, uniqueid: str, extension: str, number: str, deal: Deal, *, minutes: int):
    """A seller clicks to call the contact of ``deal``."""
    return calls.record_outbound_call(
        session, uniqueid=uniqueid, linkedid=uniqueid, extension=extension,
        dialed=classify_caller(number, region="ID", extensions=PLAN), clicked_deal_id=deal.id,
        now=at(minutes))


def titles(session, contact_id: int) -> list[str]:
    return list(session.exec(select(Deal.title).where(Deal.contact_id == contact_id)
                             .order_by(Deal.id)))


def test_a_caller_unknown_to_the_crm_is_a_contact_named_by_the_number(session, team):
    lookup = ring(session, "1.1")
    contact = session.get(Contact, lookup.contact_id)
    assert contact.name == CALLER_E164
    assert titles(session, contact.id) == [f"Call from {CALLER_E164}"]


def test_naming_the_contact_renames_the_deal_titled_by_the_number_only(session, team):
    lookup = ring(session, "1.1")
    own = make_deal(session, team["ana"], title="Website redesign", contact_id=lookup.contact_id)
    contact_edit.update_contact(session, team["ana"], lookup.contact_id, name="  Budi   Santoso ",
                                company="PT Maju", email="budi@maju.co.id", now=at(5))
    contact = session.get(Contact, lookup.contact_id)
    assert (contact.name, contact.company, contact.email) == ("Budi Santoso", "PT Maju",
                                                              "budi@maju.co.id")
    assert titles(session, contact.id) == ["Call from Budi Santoso", "Website redesign"]
    renamed = session.get(Deal, lookup.deal_id)
    assert renamed.version == 2  # a card open on the old title cannot write it back
    assert session.get(Deal, own.id).version == 1
    assert [e.action for e in audit_of(session, "contact", contact.id)] == ["create", "update"]
    assert audit_of(session, "deal", lookup.deal_id)[-1].changes == {
        "title": "Call from Budi Santoso", "contact": contact.id}


def test_a_named_contact_gives_its_name_to_the_deal_of_its_next_call(session, team):
    lookup = ring(session, "1.1")
    contact_edit.update_contact(session, team["hana"], lookup.contact_id, name="Budi Santoso")
    deals.assign_deal(session, team["hana"], lookup.deal_id, owner_id=team["ana"].user_id)
    deals.close_lost(session, team["ana"], lookup.deal_id, reason="no budget",
                     expected_version=None)
    # The trunk sends a caller name of its own: the CRM's name for the customer wins.
    again = ring(session, "2.1", name="MAJU PT", minutes=60)
    assert again.deal_id != lookup.deal_id
    assert session.get(Deal, again.deal_id).title == "Call from Budi Santoso"


def test_renaming_a_named_contact_leaves_every_title_alone(session, team):
    lookup = ring(session, "1.1", name="Budi")
    contact_edit.update_contact(session, team["hana"], lookup.contact_id, name="Budi Santoso")
    assert titles(session, lookup.contact_id) == ["Call from Budi"]


def test_a_seller_cannot_edit_a_contact_of_another_sellers_deal(session, team):
    contact = make_contact(session, name="Sari Wulandari", phones=["+62 813-1111-2222"])
    make_deal(session, team["budi"], title="ERP rollout", contact_id=contact.id)
    with pytest.raises(Forbidden):
        contact_edit.update_contact(session, team["ana"], contact.id, name="Sari W.")
    with pytest.raises(Forbidden):
        contact_edit.add_contact_phone(session, team["ana"], contact.id, "0813 9999 0000",
                                       region="ID")
    with pytest.raises(Forbidden):
        contact_card.contact_card(session, team["ana"], contact.id)
    contact_edit.update_contact(session, team["budi"], contact.id, name="Sari W.")
    contact_edit.update_contact(session, team["hana"], contact.id, name="Sari Wulandari")
    assert session.get(Contact, contact.id).name == "Sari Wulandari"


def test_any_seller_may_name_the_contact_of_an_unsorted_deal(session, team):
    lookup = ring(session, "1.1")
    contact_edit.update_contact(session, team["budi"], lookup.contact_id, name="Budi Santoso")
    assert session.get(Contact, lookup.contact_id).name == "Budi Santoso"


def test_a_contact_edit_is_refused_with_the_field_that_is_wrong(session, team):
    lookup = ring(session, "1.1")
    with pytest.raises(ValidationError) as refused:
        contact_edit.update_contact(session, team["ana"], lookup.contact_id, name="   ")
    assert (refused.value.field, refused.value.message) == ("name", "A contact needs a name.")
    with pytest.raises(ValidationError) as refused:
        contact_edit.update_contact(session, team["ana"], lookup.contact_id, name="Budi",
                                    email="budi at maju")
    assert refused.value.field == "email"
    assert session.get(Contact, lookup.contact_id).name == CALLER_E164


def test_two_people_editing_one_contact_each_change_what_they_changed(session, team):
    lookup = ring(session, "1.1")
    seen = {"name": CALLER_E164, "company": "", "email": ""}
    contact_edit.update_contact(session, team["ana"], lookup.contact_id, name="Budi Santoso",
                                shown=seen)
    # budi's form still shows the number as the name; he adds the company only.
    contact_edit.update_contact(session, team["budi"], lookup.contact_id, name=CALLER_E164,
                                company="PT Maju", shown=seen)
    contact = session.get(Contact, lookup.contact_id)
    assert (contact.name, contact.company) == ("Budi Santoso", "PT Maju")
    # hana renames from the same old page: she would overwrite a name she never saw.
    with pytest.raises(Conflict):
        contact_edit.update_contact(session, team["hana"], lookup.contact_id, name="Pak Budi",
                                    shown=seen)
    assert session.get(Contact, lookup.contact_id).name == "Budi Santoso"


def test_phones_are_added_normalised_and_a_number_belongs_to_one_contact(session, team):
    lookup = ring(session, "1.1")
    other = make_contact(session, name="Sari", phones=["+62 813-1111-2222"])
    added = contact_edit.add_contact_phone(session, team["ana"], lookup.contact_id,
                                           "(021) 555-0123", region="ID")
    assert (added.raw, added.e164) == ("(021) 555-0123", "+62215550123")
    refusals = {"021 5550123": "This contact has this number already.",
                "0813 1111 2222": "Another contact has this number; if it is the same "
                                  "customer, merge the two contacts.",
                "call me": None, "": "Type the phone number to add."}
    for typed, message in refusals.items():
        with pytest.raises(ValidationError) as refused:
            contact_edit.add_contact_phone(session, team["ana"], lookup.contact_id, typed,
                                           region="ID")
        assert refused.value.field == "phone"
        assert message is None or refused.value.message == message
    contact_edit.remove_contact_phone(session, team["ana"], lookup.contact_id, added.id)
    assert e164s(session, session.get(Contact, lookup.contact_id)) == [CALLER_E164]
    with pytest.raises(NotFound):  # another contact's number is not removed from here
        contact_edit.remove_contact_phone(session, team["hana"], lookup.contact_id,
                                          contacts.phones_of(session, other.id)[0].id)
    assert [e.action for e in audit_of(session, "contact", lookup.contact_id)] == [
        "create", "add_phone", "remove_phone"]


# --- the contact's page ---------------------------------------------------------------------


def test_the_page_shows_a_seller_the_deals_and_calls_they_may_see(session, team):
    lookup = ring(session, "1.1")
    calls.record_answer(session, uniqueid="1.1", extension="101", now=at(1))
    calls.record_hangup(session, uniqueid="1.1", dial_status="ANSWER", hangup_cause=16,
                        now=at(3))
    ana_deal = session.get(Deal, lookup.deal_id)  # ana answered: the deal is hers
    budi_deal = make_deal(session, team["hana"], title="Second site",
                          owner_id=team["budi"].user_id, contact_id=lookup.contact_id)
    dial(session, "9.1", "102", CALLER, budi_deal, minutes=10)  # budi calls about his deal

    ana = contact_card.contact_card(session, team["ana"], lookup.contact_id)
    assert [row.deal.id for row in ana.deals] == [ana_deal.id]
    assert ana.deals[0].owner_name == "Ana" and not ana.deals[0].stage.is_unsorted
    call, = ana.calls
    assert (call.call.direction, call.call.disposition, call.answered_by, call.talk_seconds) \
        == ("inbound", "answered", "Ana", 120)
    hana = contact_card.contact_card(session, team["hana"], lookup.contact_id)
    assert [row.deal.id for row in hana.deals] == [budi_deal.id, ana_deal.id]
    assert [row.call.uniqueid for row in hana.calls] == ["9.1", "1.1"]
    assert (hana.named, [p.e164 for p in hana.phones]) == (False, [CALLER_E164])


def test_the_merge_search_finds_by_name_or_number_among_contacts_the_seller_may_change(
        session, team):
    lookup = ring(session, "1.1")
    duplicate = make_contact(session, name="Budi Santoso", phones=["0812 5555 0000"])
    make_deal(session, team["ana"], title="Website redesign", contact_id=duplicate.id)
    budis = make_contact(session, name="Budi Hartono", phones=["0812 6666 0000"])
    make_deal(session, team["budi"], title="ERP rollout", contact_id=budis.id)

    def found(actor, text):
        return [row.contact.name for row in contact_card.find_contacts(
            session, actor, text, region="ID", exclude_id=lookup.contact_id)]

    assert found(team["ana"], "budi") == ["Budi Santoso"]
    assert found(team["ana"], "SANTOSO") == ["Budi Santoso"]
    assert found(team["ana"], "0812-5555-0000") == ["Budi Santoso"]
    assert found(team["ana"], "Bu") == ["Budi Santoso"]
    assert found(team["ana"], "0812 6666 0000") == []  # budi's customer
    assert found(team["hana"], "budi") == ["Budi Hartono", "Budi Santoso"]
    assert found(team["hana"], CALLER) == []  # the page's own contact
    assert found(team["hana"], "100%") == []


# --- merging ------------------------------------------------------------------------------


def test_merging_moves_phones_deals_and_calls_and_deletes_the_duplicate(session, team):
    lookup = ring(session, "1.1")
    # The same customer in the phone book, with the caller's number and the office's.
    duplicate = make_contact(session, name="Budi Santoso", phones=[CALLER, "(021) 555-0123"])
    duplicate.company = "PT Maju"
    website = make_deal(session, team["ana"], title="Website redesign",
                        contact_id=duplicate.id)
    conflict = ring(session, "2.1", minutes=30)  # the shared number: a conflict, no contact
    assert conflict.status == calls.CONFLICT
    dial(session, "3.1", "101", "(021) 555-0123", website, minutes=40)

    plan = contact_merge.merge_contacts(session, team["ana"], kept_id=lookup.contact_id,
                                        merged_id=duplicate.id, now=at(50))

    assert session.get(Contact, duplicate.id) is None
    kept = session.get(Contact, lookup.contact_id)
    # The caller's contact had no name but its number: it takes the duplicate's, and company.
    assert (kept.name, kept.company) == ("Budi Santoso", "PT Maju")
    assert e164s(session, kept) == [CALLER_E164, "+62215550123"]
    assert titles(session, kept.id) == ["Call from Budi Santoso", "Website redesign"]
    assert set(session.exec(select(Call.uniqueid).where(Call.contact_id == kept.id))) == {
        "1.1", "3.1"}
    assert (len(plan.phones_moved), len(plan.phones_shared), plan.deals, plan.calls) == (
        1, 1, 1, 1)
    merge, = [e for e in audit_of(session, "contact", kept.id) if e.action == "merge"]
    assert merge.actor == "ana" and merge.changes["merged"] == duplicate.id
    assert merge.changes["phones_shared"] == [CALLER_E164]
    assert merge.changes["phones_moved"] == ["+62215550123"]
    assert merge.changes["deals"] == [website.id]
    assert [e.action for e in audit_of(session, "contact", duplicate.id)][-1] == "merged_into"
    # The number is no longer a conflict: its next call finds the one customer.
    assert contacts.find_contact_by_number(session, CALLER_E164) == kept
    assert ring(session, "4.1", minutes=60).status == calls.FOUND


def test_merging_a_contact_with_itself_is_refused(session, team):
    lookup = ring(session, "1.1")
    with pytest.raises(ValidationError, match="itself"):
        contact_merge.merge_contacts(session, team["hana"], kept_id=lookup.contact_id,
                                     merged_id=lookup.contact_id)
    assert session.get(Contact, lookup.contact_id) is not None


def test_a_seller_merges_only_contacts_they_may_change_both_of(session, team):
    lookup = ring(session, "1.1")
    budis = make_contact(session, name="Budi Santoso", phones=["0812 6666 0000"])
    make_deal(session, team["budi"], title="ERP rollout", contact_id=budis.id)
    for kept, merged in ((lookup.contact_id, budis.id), (budis.id, lookup.contact_id)):
        with pytest.raises(Forbidden):
            contact_merge.merge_contacts(session, team["ana"], kept_id=kept, merged_id=merged)
    with pytest.raises(NotFound):
        contact_merge.merge_contacts(session, team["hana"], kept_id=lookup.contact_id,
                                     merged_id=budis.id + 100)
    contact_merge.merge_contacts(session, team["hana"], kept_id=budis.id,
                                 merged_id=lookup.contact_id)
    assert titles(session, budis.id) == ["Call from Budi Santoso", "ERP rollout"]


@pytest.mark.parametrize("role, deals_of_contact, may", [
    ("seller", [(7, False)], True), ("seller", [(None, True)], True),
    ("seller", [(8, False)], False), ("seller", [(8, False), (None, True)], True),
    ("seller", [], False), ("head", [], True), ("head", [(8, False)], True),
])
def test_who_may_see_and_change_a_contact(role, deals_of_contact, may):
    actor = Actor(user_id=7, role=role, name="ana")
    assert funnel.can_read_contact(actor, deals_of_contact) is may
