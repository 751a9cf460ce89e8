"""A refusal of the core reads in the user's language: Ana works in Indonesian, Budi in
English, and the same refused requests answer each in theirs, on the error page, in the JSON
the board's script shows, and on the form that was sent."""

from __future__ import annotations

import pytest

from factories import make_contact, make_deal, make_pipeline, make_user, stages_by_name
from pbx_crm.db import transaction
from pbx_crm.funnel import deals
from pbx_crm.people import users
from webtools import signed_in


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        stage = stages_by_name(session, pipeline)
        ana = make_user(session, "ana")
        budi = make_user(session, "budi")
        users.set_language(session, ana, ana.user_id, "id")
        contact = make_contact(session)
        ana_deal = make_deal(session, ana, title="Website redesign", contact_id=contact.id)
        other = make_contact(session, name="Sari Wulandari", phones=("+62 813-1111-2222",))
        budi_deal = make_deal(session, budi, title="ERP rollout", contact_id=other.id)
    return {"stage": stage, "ana": ana, "ana_deal": ana_deal, "budi_deal": budi_deal}


def test_a_stale_move_is_refused_in_indonesian_on_the_board(web, crm, engine):
    deal, stage = crm["ana_deal"], crm["stage"]
    with transaction(engine) as session:
        deals.move_deal(session, crm["ana"], deal.id, to_stage_id=stage["Implementation"].id,
                        expected_version=deal.version)
    answer, payload = signed_in(web, "ana").post_json(
        f"/deals/{deal.id}/move", {"stage_id": stage["Closing"].id, "version": deal.version})
    assert answer.status == 409
    assert payload["error"] == (f"Orang lain sudah mengubah “{deal.title}”: sekarang ada di "
                                "“Implementation”. Lihat lagi lalu coba sekali lagi.")


def test_a_refused_form_says_why_in_indonesian(web, crm):
    deal = crm["ana_deal"]
    answer = signed_in(web, "ana").post(f"/deals/{deal.id}/edit", {
        "title": "", "amount": "1", "priority": "1", "version": deal.version})
    assert answer.status == 400
    assert "Kesepakatan memerlukan judul." in answer.text
    assert "A deal needs a title." not in answer.text


@pytest.mark.parametrize("login, message", [
    ("ana", "Hanya kepala tim yang boleh mengalihkan kesepakatan."),
    ("budi", "Only a head may reassign deals."),
])
def test_the_same_refusal_reads_in_each_users_language(web, crm, login, message):
    deal = crm["ana_deal"] if login == "ana" else crm["budi_deal"]
    answer = signed_in(web, login).post(f"/deals/{deal.id}/assign", {
        "owner_id": crm["ana"].user_id, "version": deal.version})
    assert answer.status == 403 and message in answer.text


def test_the_error_page_and_a_named_field_speak_indonesian(web, crm):
    client = signed_in(web, "ana")
    missing = client.get("/deals/999999")
    assert missing.status == 404 and "Kesepakatan #999999 tidak ada." in missing.text
    answer, payload = client.post_json(f"/deals/{crm['ana_deal'].id}/move",
                                       {"version": crm["ana_deal"].version})
    assert answer.status == 400 and payload["error"] == "Pilih tahap."


@pytest.mark.parametrize("login, message", [
    ("ana", "Tidak ada halaman di alamat ini."),
    ("budi", "There is no page at this address."),
])
def test_an_address_with_no_page_says_so_in_the_readers_language(web, crm, login, message):
    browser = signed_in(web, login)
    browser.get("/board")  # the page she last read: her language, for pages no route serves

    answer = browser.get("/no-such-page")

    assert answer.status == 404 and message in answer.text
    assert 'href="/board"' in answer.text  # the way back


def test_a_server_fault_says_so_in_the_readers_language(web, crm):
    def broken():
        raise RuntimeError("a fault in a route")

    web.ui.app.route("/broken", callback=broken)
    ana = signed_in(web, "ana")
    ana.get("/board")

    answer = ana.get("/broken")

    assert answer.status == 500
    assert answer.text == "Terjadi kesalahan di server; rinciannya ada di log server."
