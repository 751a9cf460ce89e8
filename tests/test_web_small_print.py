"""The small print of the pages over real HTTP, on both databases: what a reader sees between
the figures and the links, in English and in Indonesian.

The team: ana sells, hana is the head; ana has one deal.
"""

from __future__ import annotations

import re

import pytest
from factories import make_deal, make_pipeline, make_user
from webtools import signed_in

from pbx_crm.db import transaction
from pbx_crm.models import Notification


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        hana = make_user(session, "hana", role="head")
        deal = make_deal(session, ana, title="Office fit-out")
    return {"ana": ana, "hana": hana, "deal": deal}


def test_a_robot_notice_and_its_deal_number_are_two_words(web, crm, engine):
    with transaction(engine) as session:
        session.add(Notification(user_id=crm["ana"].user_id, kind="robot",
                                 body="Time to send the quote?", deal_id=crm["deal"].id))
    page = signed_in(web, "ana").get("/notifications").text
    link = f'<a href="/deals/{crm["deal"].id}">#{crm["deal"].id}</a>'
    assert re.search(r"Time to send the quote\?</span>\s+" + re.escape(link), page)


def test_the_head_reads_stage_kinds_and_roles_in_indonesian(web, crm):
    client = signed_in(web, "hana")
    assert client.post("/settings/language", {"language": "id"}).status == 303
    page = client.get("/settings").text
    kinds = re.findall(r'<span class="kind">([^<]*)</span>', page)
    assert kinds == ["kerja"] * 6 + ["berhasil", "gagal"]
    roles = dict(re.findall(r'<tr data-login="(\w+)">\s*<td>\w+</td><td>[^<]*</td><td>([^<]*)<',
                            page))
    assert roles == {"ana": "penjual", "hana": "kepala"}


def test_the_report_s_period_reads_without_an_english_word(web, crm):
    client = signed_in(web, "hana")
    assert client.post("/settings/language", {"language": "id"}).status == 303
    page = client.get("/reports?period=custom&from=2024-05-06&to=2024-05-19").text
    scope = re.search(r'id="report-scope">([^<]*)<', page).group(1)
    assert scope.split("(")[0].strip() == "2024-05-06 – 2024-05-19"
    assert 'name="to" value="2024-05-19"' in page


def test_a_user_s_empty_fields_say_what_they_are_for_without_the_headers(web, crm):
    """On a phone the users table hides its headers: an empty extension or e-mail field
    still says which it is."""
    client = signed_in(web, "hana")
    assert client.post("/settings/language", {"language": "id"}).status == 303
    row = client.get("/settings").text.split('<tr data-login="hana">')[1].split("</tr>")[0]
    assert 'name="extensions" value="" aria-label="Ekstensi" placeholder="Ekstensi"' in row
    assert 'placeholder="E-mail untuk pengingat"' in row
