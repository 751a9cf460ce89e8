"""The contact's page over real HTTP, on both databases: reached from the deal card, renamed
with its number-titled deal, refused next to the field in the user's language, kept from
another seller, and merged with its duplicate after a confirmation.

The team: ana and budi sell, hana is the head. A caller the CRM did not know waits in
Unsorted as "+6281137700991"; the phone book has the same customer as "Budi Santoso", in a
deal of ana's; budi has a customer of his own.
"""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from factories import (
    PBX, audit_of, make_contact, make_deal, make_pipeline, make_unsorted_deal, make_user,
)
from pbx_crm.db import transaction
from pbx_crm.funnel import contacts
from pbx_crm.models import Contact, Deal
from webtools import signed_in

CALLER = "+6281137700991"


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        make_user(session, "hana", role="head")
        caller = contacts.create_contact(session, PBX, name=CALLER, phones=[CALLER],
                                         region="ID")
        waiting = make_unsorted_deal(session, title=f"Call from {CALLER}",
                                     contact_id=caller.id)
        duplicate = make_contact(session, name="Budi Santoso",
                                 phones=["0811 3770 0991", "(021) 555-0123"])
        website = make_deal(session, ana, title="Website redesign", contact_id=duplicate.id)
        other = make_contact(session, name="Sari Wulandari", phones=["+62 813-1111-2222"])
        make_deal(session, budi, title="ERP rollout", contact_id=other.id)
    return {"caller": caller, "waiting": waiting, "duplicate": duplicate,
            "website": website, "other": other}


def reload(engine, model, row_id):
    with transaction(engine, read_only=True) as session:
        return session.get(model, row_id)


def field_error(page: str, field: str) -> str:
    match = re.search(rf'<span class="field-error" id="{field}-error"[^>]*>([^<]*)</span>', page)
    assert match, f"no refusal next to {field}"
    return match.group(1)


def test_a_seller_names_a_callers_contact_and_its_deal_takes_the_name(web, crm, engine):
    ana = signed_in(web, "ana")
    card = ana.get(f"/deals/{crm['waiting'].id}")
    assert f'href="/contacts/{crm["caller"].id}"' in card.text
    page = ana.get(f"/contacts/{crm['caller'].id}")
    assert page.status == 200 and "Known by the number only" in page.text
    assert f"Call from {CALLER}" in page.text  # its Unsorted deal, listed

    answer = ana.post(f"/contacts/{crm['caller'].id}/edit", {
        "name": "Budi Santoso", "company": "PT Maju", "email": "",
        "shown_name": CALLER, "shown_company": "", "shown_email": ""})

    assert answer.status == 303 and answer.location.endswith(f"/contacts/{crm['caller'].id}")
    assert reload(engine, Contact, crm["caller"].id).company == "PT Maju"
    assert reload(engine, Deal, crm["waiting"].id).title == "Call from Budi Santoso"
    page = ana.get(f"/contacts/{crm['caller'].id}")
    assert "Call from Budi Santoso" in page.text and "Known by the number only" not in page.text


def test_refusals_stand_next_to_their_field_in_the_users_language(web, crm, engine):
    ana = signed_in(web, "ana")
    assert ana.post("/settings/language", {"language": "id"}).status == 303
    url = f"/contacts/{crm['caller'].id}"

    page = ana.post(url + "/edit", {"name": "  ", "email": "budi at maju"})
    assert page.status == 400
    assert field_error(page.text, "name") == "Kontak perlu nama."
    assert 'value="budi at maju"' in page.text  # what was typed is kept

    # A refusal quoting what was typed quotes it in Indonesian.
    page = ana.post(url + "/edit", {"name": "Budi", "email": "budi at maju"})
    said = field_error(page.text, "email")
    assert "budi at maju" in said and "bukan" in said and "is not" not in said

    page = ana.post(url + "/phones", {"phone": "call me"})
    said = field_error(page.text, "phone")
    assert "call me" in said and "bukan" in said and "is not" not in said
    page = ana.post(url + "/phones", {"phone": "0813 1111 2222"})  # budi's customer's
    assert field_error(page.text, "phone") == ("Kontak lain sudah punya nomor ini; jika "
                                               "pelanggannya sama, gabungkan kedua kontak itu.")
    assert "Sari" not in page.text  # the other contact is not named
    assert reload(engine, Contact, crm["caller"].id).name == CALLER


def test_a_form_from_before_someone_elses_rename_does_not_overwrite_it(web, crm, engine):
    ana, hana = signed_in(web, "ana"), signed_in(web, "hana")
    url = f"/contacts/{crm['caller'].id}/edit"
    shown = {"shown_name": CALLER, "shown_company": "", "shown_email": ""}
    assert hana.post(url, {"name": "Pak Budi", "company": "", **shown}).status == 303
    page = ana.post(url, {"name": "Budi Santoso", "company": "", **shown})
    assert page.status == 409 and "Someone else changed this contact" in page.text
    assert 'value="Pak Budi"' in page.text  # the page shows the contact as it is now
    assert reload(engine, Contact, crm["caller"].id).name == "Pak Budi"


def test_another_sellers_customer_is_out_of_reach(web, crm, engine):
    ana = signed_in(web, "ana")
    url = f"/contacts/{crm['other'].id}"
    assert ana.get(url).status == 403
    assert ana.post(url + "/edit", {"name": "Mine now"}).status == 403
    assert ana.post(url + "/phones", {"phone": "0812 0000 1111"}).status == 403
    assert ana.get(f"/contacts/{crm['caller'].id}/merge?other_id={crm['other'].id}").status \
        == 403
    assert "Sari" not in ana.get(f"/contacts/{crm['caller'].id}?q=sari").text
    assert reload(engine, Contact, crm["other"].id).name == "Sari Wulandari"
    assert signed_in(web, "hana").get(url).status == 200
    assert ana.get("/contacts/999999").status == 404


def test_a_seller_finds_the_duplicate_and_merges_it_after_confirming(web, crm, engine):
    ana = signed_in(web, "ana")
    url = f"/contacts/{crm['caller'].id}"
    found = ana.get(url + "?q=santoso")
    pick = f'{url}/merge?other_id={crm["duplicate"].id}'
    assert f'href="{pick}"' in found.text
    assert ana.get(url + "?q=0811-3770-0991").text.count('class="merge-pick"') == 1

    confirm = ana.get(pick)
    assert confirm.status == 200
    assert re.search(r'id="merge-deals">1<', confirm.text)
    assert reload(engine, Contact, crm["duplicate"].id) is not None  # asking changed nothing
    assert ana.post(url + "/merge", {"other_id": str(crm["duplicate"].id)},
                    csrf=False).status == 403

    done = ana.post(url + "/merge", {"other_id": str(crm["duplicate"].id)})

    assert done.status == 303 and done.location.endswith(f"{url}?merged=1")
    page = ana.get(f"{url}?merged=1")
    assert "The two contacts are one now." in page.text
    assert "Website redesign" in page.text and "Call from Budi Santoso" in page.text
    assert ana.get(f"/contacts/{crm['duplicate'].id}").status == 404
    with transaction(engine, read_only=True) as session:
        kept = session.get(Contact, crm["caller"].id)
        assert kept.name == "Budi Santoso"
        assert [p.e164 for p in contacts.phones_of(session, kept.id)] == [CALLER,
                                                                          "+62215550123"]
        assert set(session.exec(select(Deal.id).where(Deal.contact_id == kept.id))) == {
            crm["waiting"].id, crm["website"].id}
        assert audit_of(session, "contact", kept.id)[-1].action == "merge"
    itself = ana.get(f"{url}/merge?other_id={crm['caller'].id}")
    assert itself.status == 400 and "cannot be merged with itself" in itself.text
