"""A seller cannot take, see or look up another seller's customer through "New deal".

The team: ana (ext 101) and budi (ext 102) sell, hana is the head. Budi works an open deal for
Siti Rahmawati, who has two numbers. Whatever ana types into the "New deal" form (Siti's
number, with or without a name, a number Siti shares with a contact of ana's), the deal is
refused at the phone field, in ana's language, without a word of Siti or budi; nothing is
written, and Siti's next call still rings budi first. A head may put Siti on any deal.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from factories import (
    ADMIN, make_contact, make_deal, make_pipeline, make_unsorted_deal, make_user,
)
from pbx_crm.funnel import contacts, deals
from pbx_crm.people import users
from pbx_crm.funnel.calls import FOUND, lookup_caller
from pbx_crm.db import transaction
from pbx_crm.errors import CustomerOfAnotherSeller
from pbx_crm.models import Contact, ContactPhone, Deal
from pbx_crm.rules.phones import CallerKind, CallerNumber
from webtools import signed_in

SITI = "+6281311112222"
SITI_OFFICE = "+622150001234"
REFUSAL = "This number belongs to another seller&#39;s customer"
REFUSAL_ID = "Nomor ini milik pelanggan penjual lain"


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"], name="Budi Prakoso")
        hana = make_user(session, "hana", role="head")
        siti = make_contact(session, name="Siti Rahmawati", phones=(SITI, SITI_OFFICE))
        budis_deal = make_deal(session, budi, title="Office fit-out", contact_id=siti.id)
    return {"ana": ana, "budi": budi, "hana": hana, "siti": siti.id, "budis_deal": budis_deal.id}


def all_rows(engine, model) -> list:
    with transaction(engine, read_only=True) as session:
        return list(session.exec(select(model).order_by(model.id)))


def next_call_from(engine, number: str):
    """What the dialplan would be told if ``number`` rang now."""
    with transaction(engine, read_only=True) as session:
        return lookup_caller(session, uniqueid="1715000000.1",
                             caller=CallerNumber(number, CallerKind.NUMBER, e164=number),
                             create_deals=True)


def assert_refused_without_a_word_of_siti(answer, typed: str):
    """Refused at the phone field; of Siti, her deal and her seller the page shows nothing
    but the number as it was typed."""
    assert answer.status == 403
    assert 'id="new-deal-form"' in answer.text
    refusal = answer.text.index('id="phone-error"')
    assert answer.text.index('name="phone"') < refusal < answer.text.index('name="contact_name"')
    for secret in ("Siti Rahmawati", "Office fit-out", "Budi Prakoso", "budi",
                   *{SITI, SITI_OFFICE} - {typed}):
        assert secret not in answer.text


@pytest.mark.parametrize("typed", [
    {"phone": "0813-1111-2222"},  # Siti's number alone: "use the contact that has it"
    {"phone": "+62 813 1111 2222", "contact_name": "Siti R"},  # with a name, as a new one
    {"phone": "021 5000 1234"},  # her other number
])
def test_a_seller_typing_another_sellers_customers_number_gets_a_refusal_and_takes_nothing(
        web, crm, engine, typed):
    ana = signed_in(web, "ana")
    deals_before, phones_before = all_rows(engine, Deal), all_rows(engine, ContactPhone)

    answer = ana.post("/deals/new", {"title": "Cheaper offer", **typed})

    assert_refused_without_a_word_of_siti(answer, typed["phone"])
    assert REFUSAL in answer.text
    assert all_rows(engine, Deal) == deals_before
    assert all_rows(engine, ContactPhone) == phones_before  # no second contact on her number
    lookup = next_call_from(engine, SITI)
    assert (lookup.status, lookup.deal_id, lookup.owner_extension) == (
        FOUND, crm["budis_deal"], "102")


def test_the_refusal_is_in_the_sellers_language(web, crm, engine):
    with transaction(engine) as session:
        users.set_language(session, ADMIN, crm["ana"].user_id, "id")

    answer = signed_in(web, "ana").post("/deals/new", {"title": "X", "phone": SITI})

    assert_refused_without_a_word_of_siti(answer, SITI)
    assert REFUSAL_ID in answer.text


def test_the_screen_pops_create_link_prefills_only_what_it_carries_and_is_refused_too(
        web, crm, engine):
    ana = signed_in(web, "ana")

    form = ana.get("/deals/new?phone=%2B6281311112222&title=Call+from+%2B6281311112222")
    answer = ana.post("/deals/new", {"title": "Call from +6281311112222", "phone": SITI})

    assert form.status == 200 and "Siti Rahmawati" not in form.text
    assert_refused_without_a_word_of_siti(answer, SITI)


def test_a_number_shared_with_a_contact_of_ana_does_not_name_the_contacts_sharing_it(
        web, crm, engine):
    with transaction(engine) as session:
        switchboard = make_contact(session, name="Reception desk", phones=(SITI_OFFICE,))
        make_deal(session, crm["ana"], title="Front office", contact_id=switchboard.id)

    answer = signed_in(web, "ana").post("/deals/new", {"title": "X", "phone": SITI_OFFICE})

    assert_refused_without_a_word_of_siti(answer, SITI_OFFICE)
    assert "Reception desk" not in answer.text and "#" + str(crm["siti"]) not in answer.text


def test_searching_the_board_for_the_number_finds_nothing_of_budis(web, crm):
    answer = signed_in(web, "ana").get("/board?q=%2B6281311112222")

    assert answer.status == 200 and "Siti Rahmawati" not in answer.text


def test_a_head_may_put_the_customer_on_a_sellers_new_deal(web, crm, engine):
    answer = signed_in(web, "hana").post("/deals/new", {
        "title": "Handed over", "phone": SITI, "owner_id": crm["ana"].user_id})

    assert answer.status == 303
    with transaction(engine, read_only=True) as session:
        deal = session.exec(select(Deal).where(Deal.title == "Handed over")).one()
    assert (deal.contact_id, deal.owner_id) == (crm["siti"], crm["ana"].user_id)


def test_a_caller_waiting_in_unsorted_or_a_customer_nobody_holds_is_anyones(web, crm, engine):
    with transaction(engine) as session:
        caller = contacts.create_contact(session, ADMIN, name="Rudi Hartono",
                                         phones=("+6281900001111",), region="ID")
        make_unsorted_deal(session, contact_id=caller.id)
        make_contact(session, name="Dewi Lestari", phones=("+6281900002222",))
    ana = signed_in(web, "ana")

    waiting = ana.post("/deals/new", {"title": "Rudi's order", "phone": "+6281900001111"})
    dormant = ana.post("/deals/new", {"title": "Dewi's order", "phone": "+6281900002222"})

    assert (waiting.status, dormant.status) == (303, 303)
    assert "Rudi Hartono" in ana.get(waiting.location.removeprefix(web.url)).text


def test_a_customer_with_nothing_open_stays_with_the_seller_whose_customer_it_is(
        web, crm, engine):
    """Budi's customer between deals: their next call rings budi first, so ana may not
    start a deal on them; budi may."""
    with transaction(engine) as session:
        deal = session.get(Deal, crm["budis_deal"])
        deals.close_lost(session, ADMIN, deal.id, reason="Budget", expected_version=None)
        session.get(Contact, crm["siti"]).owner_id = crm["budi"].user_id

    refused = signed_in(web, "ana").post("/deals/new", {"title": "X", "phone": SITI})
    again = signed_in(web, "budi").post("/deals/new", {"title": "Next year", "phone": SITI})

    assert_refused_without_a_word_of_siti(refused, SITI)
    assert again.status == 303


def test_the_services_refuse_the_contact_to_a_seller_however_they_are_called(crm, engine):
    with transaction(engine) as session:
        anas_deal = make_deal(session, crm["ana"], title="Own deal")
    with pytest.raises(CustomerOfAnotherSeller), transaction(engine) as session:
        deals.create_deal(session, crm["ana"], title="X", contact_id=crm["siti"])
    with pytest.raises(CustomerOfAnotherSeller), transaction(engine) as session:
        deals.update_deal(session, crm["ana"], anas_deal.id, expected_version=None,
                          contact_id=crm["siti"])
    with transaction(engine, read_only=True) as session:
        assert session.get(Deal, anas_deal.id).contact_id is None
