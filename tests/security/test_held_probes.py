"""What a hostile colleague tried and what held, kept holding for every route there is.

The routes come from the web app's own route table, not from a list in this file: a route
added later is probed too, and fails here if it forgets the one ownership check, the CSRF
token or the head-only rule.

The team: ana and budi sell, hana is the head; budi has a deal with a task and a robot's
nudge waiting on it.
"""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from factories import (
    PASSWORD, make_contact, make_deal, make_pipeline, make_user, stages_by_name, timeline_of,
)
from pbx_crm.db import transaction
from pbx_crm.models import Deal, Task, User
from webtools import Client, signed_in

PARAMETER = re.compile(r"<(\w+)(?::[^>]*)?>")
# Pages a seller may open: their own settings, reports narrowed to their own figures.
SELLER_MAY = {("POST", "/settings/language"), ("GET", "/settings")}


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        stage = stages_by_name(session, pipeline)
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        make_user(session, "hana", role="head")
        customer = make_contact(session, name="Sari Wulandari", phones=("+62 813-1111-2222",))
        deal = make_deal(session, budi, title="ERP rollout", contact_id=customer.id)
        task = Task(deal_id=deal.id, title="Send the offer", kind="manual")
        session.add(task)
        session.flush()
    return {"pipeline": pipeline, "stage": stage, "ana": ana, "budi": budi, "deal": deal,
            "task": task}


def routes(web, *, prefix: str = "", method: str | None = None):
    """(method, rule) of every route of the app, optionally narrowed."""
    return sorted({(route.method, route.rule) for route in web.ui.app.routes
                   if route.rule.startswith(prefix) and method in (None, route.method)})


def url_of(rule: str, values: dict) -> str:
    return PARAMETER.sub(lambda match: str(values.get(match.group(1), 1)), rule)


def deal_state(engine, deal_id: int):
    with transaction(engine, read_only=True) as session:
        deal = session.get(Deal, deal_id)
        task_done = session.exec(select(Task.done_at).where(Task.deal_id == deal_id)).all()
        return (deal.version, deal.stage_id, deal.owner_id, deal.title, deal.amount_minor,
                len(timeline_of(session, deal)), task_done)


def test_every_deal_route_refuses_another_sellers_deal_and_changes_nothing(web, crm, engine):
    deal = crm["deal"]
    values = {"deal_id": deal.id, "task_id": crm["task"].id, "run_id": 1}
    form = {"version": str(deal.version), "stage_id": str(crm["stage"]["Closing"].id),
            "owner_id": str(crm["ana"].user_id), "title": "Mine now", "amount": "1",
            "priority": "1", "reason": "price", "body": "peeking", "answer": "moved"}
    before = deal_state(engine, deal.id)
    ana = signed_in(web, "ana")
    probed = routes(web, prefix="/deals/<deal_id")
    assert len(probed) >= 14
    for method, rule in probed:
        url = url_of(rule, values)
        answer = ana.get(url) if method == "GET" else ana.post(url, form)
        assert answer.status == 403, f"{method} {url}: {answer.status}"
        assert "belongs to another seller" in answer.text, f"{method} {url}"
    assert deal_state(engine, deal.id) == before


def test_every_post_refuses_a_missing_or_forged_csrf_token(web, crm, engine):
    head = signed_in(web, "hana")
    values = {"deal_id": crm["deal"].id, "task_id": crm["task"].id,
              "pipeline_id": crm["pipeline"].id, "stage_id": crm["stage"]["Closing"].id,
              "user_id": crm["ana"].user_id}
    before = deal_state(engine, crm["deal"].id)
    for method, rule in routes(web, method="POST"):
        if rule == "/login":
            continue  # no session yet: its own form token, tested with the sign-in
        url = url_of(rule, values)
        for token in ("", "forged"):
            answer = head.post(url, {"csrf_token": token, "title": "x", "body": "x"})
            assert answer.status == 403, f"POST {url} with token {token!r}: {answer.status}"
            assert "This form has expired" in answer.text, f"POST {url}"
    assert deal_state(engine, crm["deal"].id) == before
    assert head.get("/board").status == 200  # not even signed out by a forged one


def test_every_settings_and_robots_page_is_for_heads_only(web, crm, engine):
    ana = signed_in(web, "ana")
    values = {"pipeline_id": crm["pipeline"].id, "stage_id": crm["stage"]["Closing"].id,
              "user_id": crm["budi"].user_id, "rule_id": 1}
    probed = [route for route in routes(web, prefix="/settings") + routes(web, prefix="/robots")
              if route not in SELLER_MAY]
    assert len(probed) >= 15
    for method, rule in probed:
        url = url_of(rule, values)
        answer = ana.get(url) if method == "GET" else ana.post(url, {"name": "Mine",
                                                                    "active": "0"})
        assert answer.status == 403, f"{method} {url}: {answer.status}"
        assert "Only a head may" in answer.text, f"{method} {url}"
    with transaction(engine, read_only=True) as session:
        budi = session.get(User, crm["budi"].user_id)
        assert budi.active


def test_a_session_cookie_from_before_sign_in_is_never_the_signed_in_one(web, crm):
    client = Client(web.url)
    form = client.get("/login")
    before = {cookie.name: cookie.value for cookie in client.cookies}
    answer = client.post("/login", {"login": "ana", "password": PASSWORD,
                                    "csrf_token": form.csrf(), "next": "/board"})
    assert answer.status == 303
    after = {cookie.name: cookie.value for cookie in client.cookies}
    assert after and all(before.get(name) != value for name, value in after.items())


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/board",
                                    "/\\evil.example", "javascript:alert(1)"])
def test_sign_in_never_sends_the_browser_off_site(web, crm, target):
    client = Client(web.url)
    form = client.get("/login")
    answer = client.post("/login", {"login": "ana", "password": PASSWORD,
                                    "csrf_token": form.csrf(), "next": target})
    assert answer.status == 303
    location = answer.location.removeprefix(web.url)
    assert location.startswith("/") and not location.startswith(("//", "/\\"))


def test_passwords_are_kept_as_argon2id_hashes_only(crm, engine):
    with transaction(engine, read_only=True) as session:
        hashes = session.exec(select(User.password_hash)).all()
    assert hashes and all(value.startswith("$argon2id$") for value in hashes)
    assert not any(PASSWORD in value for value in hashes)
