"""The screen-pop stream over real HTTP, on both databases: who gets which pop, resuming
with Last-Event-ID, a late-committing lower id on PostgreSQL, and signed-out requests.

The team: ana (101) and budi (102) sell, hana is the head. Events are written as the
telephony processes write them (``pbx_crm.funnel.events``), in transactions of their own.
"""

from __future__ import annotations

import socket

import pytest
from factories import make_contact, make_deal, make_pipeline, make_user
from sqlalchemy.engine import URL
from telephony import eventually
from webtools import Client, Stream, WebServer, signed_in

from pbx_crm.funnel import events
from pbx_crm.db import make_engine, transaction

CALLER = "+6281234567890"


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        hana = make_user(session, "hana", role="head")
        contact = make_contact(session)
        ana_deal = make_deal(session, ana, title="Website redesign", contact_id=contact.id)
        # A customer of budi's own: a seller's deal never takes another seller's customer.
        own = make_contact(session, name="Sari Wulandari", phones=("+62 813-5555-6666",))
        budi_deal = make_deal(session, budi, title="ERP rollout", contact_id=own.id)
    return {"ana": ana, "budi": budi, "hana": hana, "ana_deal": ana_deal,
            "budi_deal": budi_deal}


def ring(engine, target, deal=None, *, linkedid="1795892488.1") -> int:
    """The telephony side pops a ringing call in ``target``'s browser (None: the heads')."""
    payload = {"uniqueid": linkedid, "linkedid": linkedid, "status": "FOUND" if deal else "NEW",
               "caller": CALLER, "caller_name": "Budi", "deal_id": deal.id if deal else None,
               "contact_id": None, "did": "2150001"}
    with transaction(engine) as session:
        target_id = target.user_id if target else None
        return events.emit(session, events.RINGING, target_user_id=target_id,
                           payload=payload, deal_id=deal.id if deal else None,
                           linkedid=linkedid).id


def test_a_seller_gets_the_pop_of_their_own_phone_and_not_another_sellers(web, crm, engine):
    ana = signed_in(web, "ana")
    with Stream(ana) as stream:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type").startswith("text/event-stream")
        ring(engine, crm["budi"], crm["budi_deal"], linkedid="call-budi")
        mine = ring(engine, crm["ana"], crm["ana_deal"], linkedid="call-ana")
        got = stream.next()  # budi's came first: had it been sent, it would be this one
    assert got["id"] == mine and got["event"] == "ringing"
    data = got["data"]
    assert data["deal_id"] == crm["ana_deal"].id and data["deal_title"] == "Website redesign"
    assert data["contact_name"] == "Budi Santoso" and data["caller"] == CALLER
    assert data["status"] == "FOUND" and data["linkedid"] == "call-ana"
    assert data["created_at"]


def test_a_head_watches_every_call_once(web, crm, engine):
    hana = signed_in(web, "hana")
    with Stream(hana) as stream:
        ring(engine, crm["ana"], crm["ana_deal"], linkedid="call-1")  # ana's own copy
        first = ring(engine, None, crm["ana_deal"], linkedid="call-1")
        second = ring(engine, None, None, linkedid="call-2")
        got = [stream.next(), stream.next()]
    assert [g["id"] for g in got] == [first, second]
    assert got[0]["data"]["deal_title"] == "Website redesign"
    assert got[1]["data"]["deal_id"] is None and got[1]["data"]["status"] == "NEW"


def test_who_answered_is_named_and_the_end_of_the_call_follows(web, crm, engine):
    ana = signed_in(web, "ana")
    deal = crm["ana_deal"]
    with Stream(ana) as stream:
        with transaction(engine) as session:
            events.emit_to_users(session, events.ANSWERED, [crm["ana"].user_id],
                                 payload={"uniqueid": "u1", "linkedid": "call-1",
                                          "extension": "101", "user_id": crm["ana"].user_id,
                                          "deal_id": deal.id},
                                 deal_id=deal.id, linkedid="call-1")
            events.emit_to_users(session, events.CALL_ENDED, [crm["ana"].user_id],
                                 payload={"uniqueid": "u1", "linkedid": "call-1",
                                          "disposition": "answered", "deal_id": deal.id},
                                 deal_id=deal.id, linkedid="call-1")
        answered, ended = stream.next(), stream.next()
    assert answered["event"] == "answered" and answered["data"]["answered_by"] == "Ana"
    assert ended["event"] == "call_ended" and ended["data"]["disposition"] == "answered"


def test_a_seller_does_not_see_the_title_of_a_deal_they_cannot_open(web, crm, engine):
    """A ring group rings ana's phone for a caller whose deal is budi's: she sees the caller,
    not budi's deal."""
    ana = signed_in(web, "ana")
    with Stream(ana) as stream:
        ring(engine, crm["ana"], crm["budi_deal"])
        data = stream.next()["data"]
    assert data["deal_id"] is None and data["deal_title"] is None and data["deal_hidden"]
    assert data["caller"] == CALLER and data["caller_name"] == "Budi"


def test_a_reconnecting_browser_gets_what_it_missed_exactly_once(web, crm, engine):
    ana = signed_in(web, "ana")
    with Stream(ana) as stream:
        seen = ring(engine, crm["ana"], crm["ana_deal"], linkedid="call-1")
        assert stream.next()["id"] == seen
    missed = [ring(engine, crm["ana"], crm["ana_deal"], linkedid=f"call-{n}") for n in (2, 3)]
    ring(engine, crm["budi"], crm["budi_deal"], linkedid="call-budi")
    with Stream(ana, last_event_id=seen) as stream:
        later = ring(engine, crm["ana"], crm["ana_deal"], linkedid="call-4")
        got = [stream.next()["id"] for _ in range(3)]
        assert got == missed + [later]
        last = ring(engine, crm["ana"], crm["ana_deal"], linkedid="call-5")
        assert stream.next()["id"] == last  # nothing in between: no pop twice
    # A page's first connect resumes from the query parameter.
    with Stream(ana, query=f"?last_event_id={missed[0]}") as stream:
        assert [stream.next()["id"] for _ in range(3)] == [missed[1], later, last]


def test_a_fresh_stream_starts_now(web, crm, engine):
    ring(engine, crm["ana"], crm["ana_deal"], linkedid="old")
    ana = signed_in(web, "ana")
    with Stream(ana) as stream:
        new = ring(engine, crm["ana"], crm["ana_deal"], linkedid="new")
        assert stream.next()["id"] == new


@pytest.mark.postgres
def test_a_lower_id_committed_late_is_still_delivered_in_order(web, crm, engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writers take turns: ids commit in order")
    hub = web.ui.event_hub
    hub.gap_grace = 60.0  # the late transaction commits well within it
    ana = signed_in(web, "ana")
    with Stream(ana) as stream:
        with transaction(engine) as late:
            slow = events.emit(late, events.RINGING, target_user_id=crm["ana"].user_id,
                               payload={"linkedid": "slow", "deal_id": None, "caller": CALLER},
                               linkedid="slow").id
            fast = ring(engine, crm["ana"], crm["ana_deal"], linkedid="fast")
            assert fast > slow
            # The hub read the later id and holds it back behind the missing one.
            eventually(lambda: fast in hub._pending, what="the hub reading the later id")
            assert hub.released < slow
        got = [stream.next()["id"], stream.next()["id"]]
        assert got == [slow, fast]
        after = ring(engine, crm["ana"], crm["ana_deal"], linkedid="after")
        assert stream.next()["id"] == after
    # A browser that had seen only the fast one cannot exist: resume from the slow one.
    with Stream(ana, last_event_id=slow) as stream:
        assert [stream.next()["id"], stream.next()["id"]] == [fast, after]


def test_a_rolled_back_id_holds_nothing_back_for_long(web, crm, engine):
    hub = web.ui.event_hub
    hub.gap_grace = 0.2
    ana = signed_in(web, "ana")
    with Stream(ana) as stream:
        with pytest.raises(RuntimeError), transaction(engine) as doomed:
            events.emit(doomed, events.RINGING, target_user_id=crm["ana"].user_id,
                        payload={"linkedid": "doomed"}, linkedid="doomed")
            raise RuntimeError("the hook failed")
        kept = ring(engine, crm["ana"], crm["ana_deal"], linkedid="kept")
        assert stream.next()["id"] == kept


def test_signed_out_browsers_get_no_stream(web, crm):
    client = Client(web.url)
    answer = client.get("/events")
    assert answer.status == 303 and "/login" in answer.location
    answer = client.get("/events", headers={"Accept": "application/json"})
    assert answer.status == 401
    with Stream(client) as stream:
        assert stream.response.status == 303


def test_a_malformed_last_event_id_is_refused(web, crm):
    ana = signed_in(web, "ana")
    with Stream(ana, query="?last_event_id=12x") as stream:
        assert stream.response.status == 400
    assert web.ui.event_hub.subscriber_count == 0


def test_a_closed_stream_leaves_the_hub(web, crm, engine):
    ana = signed_in(web, "ana")
    with Stream(ana) as stream:
        ring(engine, crm["ana"], crm["ana_deal"])
        stream.next()
        assert web.ui.event_hub.subscriber_count == 1
    # The server notices when a write fails; each ring is one.
    eventually(lambda: ring(engine, crm["ana"], crm["ana_deal"], linkedid="after-close")
               and web.ui.event_hub.subscriber_count == 0, what="the stream closing")


def test_the_new_deal_form_takes_the_callers_number_from_the_link(web, crm):
    ana = signed_in(web, "ana")
    page = ana.get("/deals/new?phone=%2B6285711112222&contact_name=%3Cb%3ESari%3C%2Fb%3E")
    assert page.status == 200
    assert 'name="phone" value="+6285711112222"' in page.text
    assert "&lt;b&gt;Sari&lt;/b&gt;" in page.text and "<b>Sari</b>" not in page.text


@pytest.mark.postgres
def test_a_web_node_on_a_multi_host_url_pops_from_the_host_that_answers(crm, engine,
                                                                           settings):
    """docs/deploy.md: a URL naming the standby's address first (here a closed port) and the
    primary second, with target_session_attrs=read-write; the LISTEN follows it too."""
    if engine.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY and libpq's host lists are PostgreSQL's")
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    url = engine.url
    both = make_engine(URL.create(url.drivername, url.username, url.password,
                                  database=url.database, query={
        "host": (f"127.0.0.1:{dead}", f"{url.host}:{url.port or 5432}"),
        "target_session_attrs": "read-write"}).render_as_string(hide_password=False))
    try:
        with WebServer(settings, both) as web:
            ana = signed_in(web, "ana")
            with Stream(ana) as stream:
                seen = ring(engine, crm["ana"], crm["ana_deal"], linkedid="via-second-host")
                assert stream.next()["id"] == seen
    finally:
        both.dispose()
