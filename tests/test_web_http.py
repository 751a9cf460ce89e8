"""The web UI over real HTTP, on both databases: sign-in, CSRF, ownership of every deal
route, validation, the board, settings, notifications, languages.

The team: ana and budi sell (ana rings on 101), hana is the head. Ana has a deal for Budi
Santoso, budi has one of his own, and a caller waits in Unsorted.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import pytest
from sqlmodel import select

from factories import (
    PASSWORD, at, make_contact, make_deal, make_pipeline, make_unsorted_deal, make_user,
    stages_by_name, timeline_of,
)
from pbx_crm.db import transaction
from pbx_crm.models import (
    Deal, LoginFailure, Notification, RobotRule, RobotRun, Task, User, WebSession,
)
from webtools import Client, WebServer, signed_in

SCRIPT = '<script>document.title="owned"</script><img src=x onerror=alert(1)>'


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        stage = stages_by_name(session, pipeline)
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        hana = make_user(session, "hana", role="head")
        contact = make_contact(session)
        other = make_contact(session, name="Sari Wulandari", phones=("+62 813-1111-2222",))
        ana_deal = make_deal(session, ana, title="Website redesign", contact_id=contact.id,
                             amount_minor=150_000_000)
        budi_deal = make_deal(session, budi, title="ERP rollout", contact_id=other.id)
        waiting = make_unsorted_deal(session)
    return {"pipeline": pipeline, "stage": stage, "ana": ana, "budi": budi, "hana": hana,
            "ana_deal": ana_deal, "budi_deal": budi_deal, "waiting": waiting}




def deal_row(engine, deal_id: int) -> Deal:
    with transaction(engine, read_only=True) as session:
        return session.get(Deal, deal_id)


# --- signing in -----------------------------------------------------------------------------


def test_signing_in_sets_a_safe_session_cookie_and_signing_out_ends_the_session(web, crm,
                                                                                engine):
    client = Client(web.url)
    answer = client.sign_in("ana", PASSWORD)
    assert answer.status == 303 and answer.location.endswith("/board")
    cookie = answer.headers["Set-Cookie"]
    assert "pbx_crm_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie.replace("Lax", "lax") and "Secure" not in cookie
    board = client.get("/board")
    assert board.status == 200 and "Website redesign" in board.text
    with transaction(engine, read_only=True) as session:
        stored = session.exec(select(WebSession)).one()
    token = client.cookie("pbx_crm_session").value
    assert token not in (stored.token_hash, stored.csrf_token)  # only a hash is kept

    assert client.post("/logout").status == 303
    with transaction(engine, read_only=True) as session:
        assert session.exec(select(WebSession)).all() == []
    replay = Client(web.url)
    replay.cookies.set_cookie(client.cookie("pbx_crm_session") or _cookie(token))
    assert replay.get("/board").status == 303  # the old token signs nobody in


def _cookie(token):
    import http.cookiejar

    return http.cookiejar.Cookie(0, "pbx_crm_session", token, None, False, "127.0.0.1", False,
                                 False, "/", True, False, None, False, None, None, {})


def test_the_cookie_is_secure_when_configured(settings, engine, crm):
    with WebServer(settings.replace(web_secure_cookies=True), engine) as web:
        client = Client(web.url)
        form = client.get("/login")
        assert "Secure" in form.headers["Set-Cookie"]
        # A client keeps Secure cookies for HTTPS: sent by hand here, over loopback HTTP.
        answer = client.post("/login", {"login": "ana", "password": PASSWORD,
                                        "csrf_token": form.csrf()},
                             headers={"Cookie": f"pbx_crm_login_csrf={form.csrf()}"})
        assert answer.status == 303 and "Secure" in answer.headers["Set-Cookie"]


def test_a_wrong_password_is_refused_without_a_session(web, crm):
    client = Client(web.url)
    answer = client.sign_in("ana", "not the password")
    assert answer.status == 401 and "Wrong login or password." in answer.text
    assert client.cookie("pbx_crm_session") is None


def test_the_sign_in_form_needs_its_csrf_token_and_never_redirects_off_site(web, crm):
    client = Client(web.url)
    client.get("/login")
    refused = client.post("/login", {"login": "ana", "password": PASSWORD}, csrf=False)
    assert refused.status == 403 and client.cookie("pbx_crm_session") is None
    form = client.get("/login?next=//evil.example/x")
    answer = client.post("/login", {"login": "ana", "password": PASSWORD,
                                    "csrf_token": form.csrf(), "next": "//evil.example/x"})
    assert answer.status == 303 and answer.location.endswith("/board")


def test_repeated_failures_lock_the_login_for_every_worker(web, crm, settings, engine):
    client = Client(web.url)
    for _ in range(5):
        assert client.sign_in("ana", "guess").status == 401
    locked = client.sign_in("ana", PASSWORD)
    assert locked.status == 429 and "Too many failed sign-ins" in locked.text
    # Another worker process (another app on the same database) agrees.
    with WebServer(settings, engine) as other:
        assert Client(other.url).sign_in("ana", PASSWORD).status == 429
    # Another login from the same address is still welcome.
    assert Client(web.url).sign_in("budi", PASSWORD).status == 303


def test_many_failures_from_one_address_lock_that_address(web, crm, engine):
    with transaction(engine) as session:
        for n in range(20):
            session.add(LoginFailure(login=f"guess{n}", address="127.0.0.1"))
    assert Client(web.url).sign_in("budi", PASSWORD).status == 429


def test_a_deactivated_user_is_signed_out(web, crm, engine):
    client = signed_in(web, "ana")
    with transaction(engine) as session:
        session.get(User, crm["ana"].user_id).active = False
    assert client.get("/board").status == 303


def test_pages_ask_for_sign_in_and_posts_are_refused_without_one(web, crm):
    client = Client(web.url)
    answer = client.get("/deals/1")
    assert answer.status == 303 and "/login?next=%2Fdeals%2F1" in answer.location
    assert client.post(f"/deals/{crm['ana_deal'].id}/notes", {"body": "x"},
                       csrf=False).status == 401


# --- CSRF -----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "forged"])
def test_a_post_without_the_sessions_csrf_token_changes_nothing(web, crm, engine, token):
    client = signed_in(web, "ana")
    deal = crm["ana_deal"]
    answer = client.post(f"/deals/{deal.id}/move", {
        "stage_id": crm["stage"]["Closing"].id, "version": deal.version, "csrf_token": token})
    assert answer.status == 403
    assert deal_row(engine, deal.id).stage_id == deal.stage_id


# --- one ownership check for every deal route -------------------------------------------------

DEAL_ROUTES = [
    ("GET", "/deals/{id}", {}),
    ("GET", "/deals/{id}/export", {}),
    ("POST", "/deals/{id}/move", {"stage_id": "{closing}", "version": "{version}"}),
    ("POST", "/deals/{id}/take", {}),
    ("POST", "/deals/{id}/edit", {"title": "Mine now", "amount": "1", "priority": "2",
                                  "version": "{version}"}),
    ("POST", "/deals/{id}/assign", {"owner_id": "{ana}", "version": "{version}"}),
    ("POST", "/deals/{id}/won", {"version": "{version}"}),
    ("POST", "/deals/{id}/lost", {"reason": "price", "version": "{version}"}),
    ("POST", "/deals/{id}/reopen", {"version": "{version}"}),
    ("POST", "/deals/{id}/notes", {"body": "peeking"}),
    ("POST", "/deals/{id}/tasks", {"title": "peek"}),
    ("POST", "/deals/{id}/tasks/{task}/done", {}),
    ("POST", "/deals/{id}/call", {}),
]


@pytest.mark.parametrize("method, path, data", DEAL_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in DEAL_ROUTES])
def test_a_seller_gets_403_on_another_sellers_deal_by_url(web, crm, engine, method, path,
                                                          data):
    deal = crm["budi_deal"]
    with transaction(engine) as session:
        task = Task(deal_id=deal.id, title="Send the offer", kind="manual")
        session.add(task)
        session.flush()
        before = len(timeline_of(session, deal))
    values = {"id": deal.id, "closing": crm["stage"]["Closing"].id, "version": deal.version,
              "ana": crm["ana"].user_id, "task": task.id}
    client = signed_in(web, "ana")
    url = path.format(**values)
    form = {key: value.format(**values) for key, value in data.items()}
    answer = client.get(url) if method == "GET" else client.post(url, form)
    assert answer.status == 403, answer.text
    assert "belongs to another seller" in answer.text
    after = deal_row(engine, deal.id)
    assert (after.version, after.stage_id, after.owner_id, after.title) == \
        (deal.version, deal.stage_id, deal.owner_id, deal.title)
    with transaction(engine, read_only=True) as session:
        assert len(timeline_of(session, deal)) == before
        assert session.get(Task, task.id).done_at is None


def test_a_missing_deal_is_404(web, crm):
    assert signed_in(web, "hana").get("/deals/999999").status == 404


def test_the_head_opens_and_exports_any_deal(web, crm):
    client = signed_in(web, "hana")
    deal = crm["budi_deal"]
    assert client.get(f"/deals/{deal.id}").status == 200
    export = client.get(f"/deals/{deal.id}/export")
    assert export.status == 200 and json.loads(export.text)["title"] == "ERP rollout"


# --- the board --------------------------------------------------------------------------------


def test_a_seller_sees_their_own_deals_and_unsorted_with_a_take_button(web, crm):
    board = signed_in(web, "ana").get("/board")
    assert "Website redesign" in board.text and "ERP rollout" not in board.text
    assert crm["waiting"].title in board.text
    assert f'action="/deals/{crm["waiting"].id}/take"' in board.text
    # Column order: Unsorted first, then the stages as set up.
    names = re.findall(r"<h2>([^<]+)</h2>", board.text)
    assert names[:3] == ["Unsorted", "Opportunity", "Commercial proposal"]


def test_a_head_sees_everyone_and_filters_by_seller(web, crm):
    client = signed_in(web, "hana")
    everyone = client.get("/board")
    assert "Website redesign" in everyone.text and "ERP rollout" in everyone.text
    budi_only = client.get(f"/board?owner={crm['budi'].user_id}")
    assert "ERP rollout" in budi_only.text and "Website redesign" not in budi_only.text
    assert crm["waiting"].title in budi_only.text  # Unsorted is everyone's
    assert client.get("/board?owner=abc").status == 400


def test_columns_show_count_and_money_and_load_more_on_demand(web, crm, engine):
    with transaction(engine) as session:
        for minute in range(25):
            make_deal(session, crm["ana"], title=f"Lead {minute:02d}", amount_minor=100_00,
                      now=at(minute))
    client = signed_in(web, "ana")
    board = client.get("/board")
    opportunity = crm["stage"]["Opportunity"].id
    column = board.text.split(f'data-stage-id="{opportunity}" data-kind')[1]
    assert re.search(r'class="count">26<', column)  # 25 leads and Website redesign
    titles = re.findall(r'class="title" href="/deals/\d+">([^<]+)<', column.split("</section>")[0])
    assert len(titles) == 20
    after = re.search(r'data-after="([^"]+)"', column).group(1)
    more = client.get(f"/board/column/{opportunity}?" + urlencode({"after": after}))
    rest = re.findall(r'class="title" href="/deals/\d+">([^<]+)<', more.text)
    assert len(rest) == 6 and not set(rest) & set(titles)
    assert client.get(f"/board/column/{opportunity}?after=yesterday").status == 400


def test_search_by_name_phone_and_deal_number_within_what_the_seller_may_see(web, crm):
    client = signed_in(web, "ana")
    for text in ("budi santoso", "0812 3456 7890", f"#{crm['ana_deal'].id}", "redesign"):
        found = client.get("/board?q=" + text.replace(" ", "+").replace("#", "%23"))
        assert found.status == 200 and "Website redesign" in found.text, text
    other = client.get("/board?q=sari")
    assert "ERP rollout" not in other.text and "No deal matches." in other.text
    assert "ERP rollout" in signed_in(web, "hana").get("/board?q=sari").text


def test_a_card_is_marked_overdue_while_a_robot_nudge_waits_for_an_answer(web, crm, engine):
    deal = crm["ana_deal"]
    with transaction(engine) as session:
        rule = RobotRule(stage_id=deal.stage_id, name="Stale", condition="idle",
                         action="nudge")
        session.add(rule)
        session.flush()
        session.add(RobotRun(rule_id=rule.id, deal_id=deal.id, run_key=f"r-{deal.id}",
                             status="done"))
    client = signed_in(web, "ana")
    assert 'class="overdue"' in client.get("/board").text
    with transaction(engine) as session:
        run = session.exec(select(RobotRun)).one()
        run.answer = "snooze"
        session.add(run)
    assert 'class="overdue"' not in client.get("/board").text


# --- moving and taking ------------------------------------------------------------------------


def test_a_drag_moves_the_card_and_answers_with_fresh_totals(web, crm, engine):
    client = signed_in(web, "ana")
    deal, closing = crm["ana_deal"], crm["stage"]["Closing"]
    answer, payload = client.post_json(f"/deals/{deal.id}/move",
                                       {"stage_id": closing.id, "version": deal.version})
    assert answer.status == 200
    assert payload["deal"] == {"id": deal.id, "stage_id": closing.id, "stage": "Closing",
                               "version": deal.version + 1}
    assert payload["totals"][str(closing.id)]["count"] == 1
    assert deal_row(engine, deal.id).stage_id == closing.id


def test_a_move_on_a_stale_version_shows_the_current_state(web, crm, engine):
    client = signed_in(web, "ana")
    deal, stage = crm["ana_deal"], crm["stage"]
    with transaction(engine) as session:
        from pbx_crm.funnel import deals

        deals.move_deal(session, crm["ana"], deal.id, to_stage_id=stage["Implementation"].id,
                        expected_version=deal.version)
    answer, payload = client.post_json(f"/deals/{deal.id}/move", {
        "stage_id": stage["Closing"].id, "version": deal.version})
    assert answer.status == 409 and "changed by someone else" in payload["error"]
    assert payload["deal"]["stage"] == "Implementation"
    page = client.post(f"/deals/{deal.id}/move", {"stage_id": stage["Closing"].id,
                                                  "version": deal.version})
    assert page.status == 409 and "changed by someone else" in page.text
    assert 'id="deal-stage">Implementation<' in page.text
    assert deal_row(engine, deal.id).stage_id == stage["Implementation"].id


@pytest.mark.parametrize("form, message", [
    ({}, "Choose stage"),
    ({"version": "x1", "stage_id": "3"}, "missing the deal&#39;s version"),
    ({"stage_id": "3"}, "missing the deal&#39;s version"),
    ({"version": "1", "stage_id": "nope"}, "is not a valid stage"),
    ({"version": "1"}, "Choose stage"),
])
def test_a_malformed_move_changes_nothing(web, crm, engine, form, message):
    deal = crm["ana_deal"]
    answer = signed_in(web, "ana").post(f"/deals/{deal.id}/move", form)
    assert answer.status == 400 and message in answer.text
    assert deal_row(engine, deal.id).version == deal.version


def test_moving_to_lost_needs_a_reason(web, crm, engine):
    deal = crm["ana_deal"]
    client = signed_in(web, "ana")
    answer = client.post(f"/deals/{deal.id}/lost", {"version": deal.version, "reason": " "})
    assert answer.status == 400 and "Say why the deal was lost." in answer.text
    done = client.post(f"/deals/{deal.id}/lost", {"version": deal.version,
                                                  "reason": "Too expensive"})
    assert done.status == 303
    assert deal_row(engine, deal.id).lost_reason == "Too expensive"
    reopened = client.post(f"/deals/{deal.id}/reopen", {"version": deal.version + 1})
    assert reopened.status == 303 and deal_row(engine, deal.id).closed_at is None


def test_a_seller_takes_an_unsorted_deal_and_the_second_taker_is_told(web, crm, engine):
    waiting = crm["waiting"]
    assert signed_in(web, "ana").post(f"/deals/{waiting.id}/take").status == 303
    assert deal_row(engine, waiting.id).owner_id == crm["ana"].user_id
    late = signed_in(web, "budi").post(f"/deals/{waiting.id}/take")
    assert late.status == 403  # it is Ana's now: out of Budi's sight


def test_only_a_head_reassigns(web, crm, engine):
    deal = crm["ana_deal"]
    refused = signed_in(web, "ana").post(f"/deals/{deal.id}/assign", {
        "owner_id": crm["budi"].user_id, "version": deal.version})
    assert refused.status == 403 and "Only a head" in refused.text
    done = signed_in(web, "hana").post(f"/deals/{deal.id}/assign", {
        "owner_id": crm["budi"].user_id, "version": deal.version})
    assert done.status == 303 and deal_row(engine, deal.id).owner_id == crm["budi"].user_id


# --- editing, notes, tasks -------------------------------------------------------------------


@pytest.mark.parametrize("form, message", [
    ({"title": "", "amount": "1", "priority": "1"}, "A deal needs a title."),
    ({"title": "T", "amount": "1.2.3", "priority": "1"}, "is not an amount"),
    ({"title": "T", "amount": "-5", "priority": "1"}, "zero or more"),
    ({"title": "T", "amount": "1", "priority": "7"}, "Priority is 0"),
])
def test_a_malformed_edit_rerenders_the_card_and_changes_nothing(web, crm, engine, form,
                                                                 message):
    deal = crm["ana_deal"]
    answer = signed_in(web, "ana").post(f"/deals/{deal.id}/edit",
                                        {**form, "version": deal.version})
    assert answer.status == 400 and message in answer.text
    assert 'id="deal-card"' in answer.text
    after = deal_row(engine, deal.id)
    assert (after.title, after.amount_minor, after.version) == \
        (deal.title, deal.amount_minor, deal.version)


def test_an_edit_reads_the_amount_in_the_users_locale(web, crm, engine):
    deal = crm["ana_deal"]
    answer = signed_in(web, "ana").post(f"/deals/{deal.id}/edit", {
        "title": "Website + shop", "amount": "2,500,000", "priority": "2",
        "version": deal.version})
    assert answer.status == 303
    after = deal_row(engine, deal.id)
    assert (after.title, after.amount_minor, after.priority) == ("Website + shop",
                                                                 250_000_000, 2)


def test_notes_and_tasks(web, crm, engine):
    deal = crm["ana_deal"]
    client = signed_in(web, "ana")
    assert client.post(f"/deals/{deal.id}/notes", {"body": "  "}).status == 400
    assert client.post(f"/deals/{deal.id}/notes", {"body": "Call back Monday"}).status == 303
    assert client.post(f"/deals/{deal.id}/tasks", {"title": "Offer",
                                                   "due": "tomorrow"}).status == 400
    assert client.post(f"/deals/{deal.id}/tasks", {"title": "Offer",
                                                   "due": "2024-05-10"}).status == 303
    with transaction(engine, read_only=True) as session:
        task = session.exec(select(Task)).one()
    assert task.due_at.isoformat() == "2024-05-10T11:00:00+00:00"  # 18:00 in Jakarta
    assert client.post(f"/deals/{deal.id}/tasks/{task.id}/done").status == 303
    assert client.post(f"/deals/{deal.id}/tasks/{task.id}/done").status == 409
    page = client.get(f"/deals/{deal.id}").text
    assert "Call back Monday" in page and "Done: Offer" in page


def test_a_task_of_another_deal_cannot_be_finished_through_this_one(web, crm, engine):
    with transaction(engine) as session:
        other = make_deal(session, crm["ana"], title="Second")
        task = Task(deal_id=other.id, title="Elsewhere", kind="manual")
        session.add(task)
        session.flush()
    answer = signed_in(web, "ana").post(f"/deals/{crm['ana_deal'].id}/tasks/{task.id}/done")
    assert answer.status == 400


def test_click_to_call_without_ami_says_so(web, crm):
    answer = signed_in(web, "ana").post(f"/deals/{crm['ana_deal'].id}/call",
                                        {"number": "+6281234567890"})
    assert answer.status == 503 and "AMI" in answer.text


def test_click_to_call_rings_the_sellers_phone_through_ami(settings, engine, crm, server):
    host, port = server.address
    ami = settings.replace(ami_host=host, ami_port=port, ami_username="crm",
                           ami_secret="secret")
    with WebServer(ami, engine) as web:
        client = signed_in(web, "ana")
        assert "Call</button>" in client.get(f"/deals/{crm['ana_deal'].id}").text
        answer = client.post(f"/deals/{crm['ana_deal'].id}/call", {"number": "+6281234567890"})
        assert answer.status == 303
    (originate,) = server.originates
    assert originate["Channel"] == "PJSIP/101" and originate["Exten"] == "6281234567890"


# --- new deal -------------------------------------------------------------------------------


def test_new_deal_for_a_new_contact_and_for_a_known_number(web, crm, engine):
    client = signed_in(web, "ana")
    form = client.get("/deals/new")
    assert form.status == 200
    answer = client.post("/deals/new", {"title": "Fleet tracking", "phone": "0811 2222 3333",
                                        "contact_name": "Rudi", "amount": "3,000,000",
                                        "stage_id": crm["stage"]["Commercial proposal"].id})
    assert answer.status == 303
    known = client.post("/deals/new", {"title": "Second site", "phone": "+62 812-3456-7890"})
    assert known.status == 303
    with transaction(engine, read_only=True) as session:
        fleet = session.exec(select(Deal).where(Deal.title == "Fleet tracking")).one()
        second = session.exec(select(Deal).where(Deal.title == "Second site")).one()
    assert (fleet.amount_minor, fleet.stage_id, fleet.owner_id) == (
        300_000_000, crm["stage"]["Commercial proposal"].id, crm["ana"].user_id)
    assert second.contact_id == crm["ana_deal"].contact_id


@pytest.mark.parametrize("form, message", [
    ({"title": "", "phone": "0811 2222 3333", "contact_name": "Rudi"}, "A deal needs a title."),
    ({"title": "X", "phone": "call me", "contact_name": "Rudi"}, "call me"),
    ({"title": "X", "phone": "0811 2222 3333"}, "give the new contact"),
    ({"title": "X", "contact_name": "Rudi", "amount": "lots"}, "is not an amount"),
    ({"title": "X", "contact_name": "Rudi", "stage_id": "0"}, "No stage #0"),
])
def test_a_malformed_new_deal_returns_the_form_and_creates_nothing(web, crm, engine, form,
                                                                   message):
    with transaction(engine, read_only=True) as session:
        before = len(session.exec(select(Deal)).all())
    answer = signed_in(web, "ana").post("/deals/new", form)
    assert answer.status in (400, 404) and message in answer.text
    assert 'id="new-deal-form"' in answer.text
    if form.get("contact_name"):
        assert f'value="{form["contact_name"]}"' in answer.text  # what was typed stays
    with transaction(engine, read_only=True) as session:
        assert len(session.exec(select(Deal)).all()) == before


def test_a_seller_cannot_create_a_deal_for_someone_else(web, crm):
    answer = signed_in(web, "ana").post("/deals/new", {"title": "X", "contact_name": "R",
                                                       "owner_id": crm["budi"].user_id})
    assert answer.status == 403


# --- markup stays text -------------------------------------------------------------------------


def test_markup_in_any_field_is_shown_as_text(web, crm, engine):
    with transaction(engine) as session:
        contact = make_contact(session, name=SCRIPT, phones=("+62 811-9999-0000",))
        deal = make_deal(session, crm["ana"], title=SCRIPT, contact_id=contact.id)
    client = signed_in(web, "ana")
    client.post(f"/deals/{deal.id}/notes", {"body": SCRIPT})
    for page in (client.get("/board"), client.get(f"/deals/{deal.id}"),
                 client.get("/board?q=script")):
        assert "<script>document" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;" in page.text
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]


# --- settings -------------------------------------------------------------------------------

HEAD_ONLY = [
    ("/settings/pipelines", {"name": "Service", "stages": "Visit"}),
    ("/settings/pipelines/{pipeline}/stages", {"name": "Demo", "kind": "open"}),
    ("/settings/pipelines/{pipeline}/calls", {"enabled": "no"}),
    ("/settings/stages/{closing}/rename", {"name": "Final"}),
    ("/settings/stages/{closing}/move", {"direction": "up"}),
    ("/settings/users", {"login": "eka", "name": "Eka", "password": PASSWORD}),
    ("/settings/users/{budi}/active", {"active": "no"}),
    ("/settings/users/{budi}/extensions", {"extensions": "105"}),
    ("/settings/users/{budi}/language", {"language": "id"}),
    ("/settings/users/{budi}/email", {"email": "budi@toko.example"}),
]


@pytest.mark.parametrize("path, data", HEAD_ONLY, ids=[p for p, _ in HEAD_ONLY])
def test_settings_are_for_heads_only(web, crm, engine, path, data):
    values = {"pipeline": crm["pipeline"].id, "closing": crm["stage"]["Closing"].id,
              "budi": crm["budi"].user_id}
    url = path.format(**values)
    seller = signed_in(web, "ana")
    assert seller.post(url, data).status == 403
    with transaction(engine, read_only=True) as session:
        assert session.exec(select(User).where(User.login == "eka")).first() is None
        assert session.get(User, crm["budi"].user_id).active
    assert signed_in(web, "hana").post(url, data).status == 303


def test_the_head_sets_up_stages_and_users(web, crm, engine):
    client = signed_in(web, "hana")
    pipeline, stage = crm["pipeline"], crm["stage"]
    assert client.post(f"/settings/pipelines/{pipeline.id}/stages",
                       {"name": "", "kind": "open"}).status == 400
    assert client.post(f"/settings/pipelines/{pipeline.id}/stages",
                       {"name": "Demo", "kind": "sideways"}).status == 400
    assert client.post(f"/settings/stages/{stage['Opportunity'].id}/move",
                       {"direction": "up"}).status == 400  # Unsorted stays first
    assert client.post(f"/settings/stages/{stage['Closing'].id}/rename",
                       {"name": "Final check"}).status == 303
    assert client.post("/settings/users", {"login": "Eka!", "name": "Eka",
                                           "password": PASSWORD}).status == 400
    assert client.post("/settings/users", {"login": "eka", "name": "Eka", "password": PASSWORD,
                                           "extensions": "101"}).status == 409
    assert client.post("/settings/users", {"login": "eka", "name": "Eka", "password": PASSWORD,
                                           "extensions": "103", "language": "id"}).status == 303
    assert client.post(f"/settings/pipelines/{pipeline.id}/calls",
                       {"enabled": "no"}).status == 303
    budi = crm["budi"].user_id
    assert client.post(f"/settings/users/{budi}/email", {"email": "budi at toko"}).status == 400
    assert client.post(f"/settings/users/{budi}/email",
                       {"email": "budi@toko.example"}).status == 303
    page = client.get("/settings").text
    assert 'value="budi@toko.example"' in page
    assert "Final check" in page and 'data-login="eka"' in page
    with transaction(engine, read_only=True) as session:
        eka = session.exec(select(User).where(User.login == "eka")).one()
        assert eka.language == "id"
        assert session.get(User, budi).email == "budi@toko.example"
        assert not session.get(type(pipeline), pipeline.id).creates_deals_from_calls


def test_a_seller_sets_their_own_language_and_sees_indonesian(web, crm, engine):
    client = signed_in(web, "ana")
    assert client.post("/settings/language", {"language": "xx"}).status == 400
    assert client.post("/settings/language", {"language": "id"}).status == 303
    board = client.get("/board").text
    assert ">Papan<" in board and "Belum Disortir" in board
    assert "Rp1.500.000" in board  # money in the Indonesian way


# --- notifications ----------------------------------------------------------------------------


def test_notifications_are_the_users_own(web, crm, engine):
    with transaction(engine) as session:
        mine = Notification(user_id=crm["ana"].user_id, kind="robot", body="Deal is idle",
                            deal_id=crm["ana_deal"].id)
        theirs = Notification(user_id=crm["budi"].user_id, kind="robot", body="Budi's news")
        session.add_all([mine, theirs])
        session.flush()
    client = signed_in(web, "ana")
    page = client.get("/notifications")
    assert "Deal is idle" in page.text and "Budi&#39;s news" not in page.text
    assert 'class="badge">1<' in page.text
    assert client.post(f"/notifications/{theirs.id}/read").status == 404
    assert client.post(f"/notifications/{mine.id}/read").status == 303
    with transaction(engine, read_only=True) as session:
        assert session.get(Notification, mine.id).read_at is not None
        assert session.get(Notification, theirs.id).read_at is None
    assert client.post("/notifications/read-all").status == 303


def test_static_files_and_health_need_no_sign_in(web):
    client = Client(web.url)
    assert client.get("/healthz").text == "ok"
    assert client.get("/static/vendor/Sortable.min.js").status == 200
    assert client.get("/static/../app.py").status in (403, 404)


