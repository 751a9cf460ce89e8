"""An open screen-pop stream ends with its session (issue 13, hole 2), on both databases, over
real HTTP, with calls played through the real FastAGI component.

Sign-out, deactivation and a new password end the session; the stream checks its session
before every event it sends, so the first call after the end brings the stream's end
(a ``signed_out`` message), never the call's pop. (A deactivated seller's phone is no longer
looked up, but a head gets every call: deactivation is shown on a head.) A new password and a
deactivation end every session of the user, in every browser; other users keep theirs.

The team: ana (101) owns the deal of Budi Santoso, who calls; hana is the head, who gets a pop
for every call.
"""

from __future__ import annotations

import pytest
from factories import PASSWORD, make_contact, make_deal, make_pipeline, make_user
from telephony import Pbx, eventually
from webtools import Client, Stream, signed_in

from pbx_crm.sample import demo
from pbx_crm.db import transaction

BUDI = "+62 812-3456-7890"
NEW_PASSWORD = "a brand new password"


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        make_user(session, "hana", role="head")
        caller = make_contact(session, name="Budi Santoso", phones=(BUDI,))
        make_deal(session, ana, title="Website redesign", contact_id=caller.id)


@pytest.fixture
def pbx(engine, tmp_path):
    pbx = Pbx(engine, tmp_path / "pbx")
    yield pbx
    pbx.stop()


@pytest.fixture
def admin(engine, pbx_crm_at):
    """`pbx-crm` at the admin's shell, on the test database: admin("user", "list")."""
    url = engine.url.render_as_string(hide_password=False)

    def run(*args, stdin: str | None = None):
        code, out, err = pbx_crm_at(url, *args, stdin=stdin)
        assert code == 0, err
        return out

    return run


def budi_calls(pbx: Pbx) -> None:
    """Budi Santoso calls: ana's phone rings (his deal is hers), and the head watches."""
    pbx.incoming(pbx.trunk_call(BUDI, "Budi"))


def a_working_stream(client: Client, pbx: Pbx) -> Stream:
    """``client``'s stream, shown to deliver a pop before anything ends."""
    stream = Stream(client)
    assert stream.response.status == 200
    budi_calls(pbx)
    assert stream.next()["data"]["deal_title"] == "Website redesign"
    return stream


def assert_ends_without_a_pop(stream: Stream) -> None:
    """The next message is the stream's end, then the server closes it."""
    message = stream.next_message()
    assert message is not None, "the stream closed without saying why"
    assert message["event"] == "signed_out", f"a pop arrived after the session ended: {message}"
    assert stream.next_message() is None


def assert_signed_out(client: Client) -> None:
    answer = client.get("/board")
    assert answer.status == 303 and "/login" in answer.location
    # The browser's reconnect is refused as well.
    assert client.get("/events", headers={"Accept": "application/json"}).status == 401


def test_signing_out_in_one_tab_ends_the_stream_of_another_before_the_next_pop(
        web, crm, pbx):
    ana = signed_in(web, "ana")
    with a_working_stream(ana, pbx) as other_tab:
        assert ana.post("/logout").status == 303
        budi_calls(pbx)
        assert_ends_without_a_pop(other_tab)
    assert_signed_out(ana)
    eventually(lambda: web.ui.event_hub.subscriber_count == 0, what="the stream leaving the hub")


def test_a_deactivated_head_gets_no_pop_and_reactivation_brings_no_session_back(
        web, crm, pbx, admin):
    hana = signed_in(web, "hana")
    with a_working_stream(hana, pbx) as stream:
        admin("user", "deactivate", "hana")
        budi_calls(pbx)
        assert_ends_without_a_pop(stream)
    admin("user", "activate", "hana")
    assert_signed_out(hana)
    assert hana.sign_in("hana", PASSWORD).status == 303  # a new sign-in works again


def test_a_new_password_from_the_command_line_signs_the_user_out_everywhere(
        web, crm, pbx, admin):
    laptop, phone = signed_in(web, "ana"), signed_in(web, "ana")
    hana = signed_in(web, "hana")
    with Stream(hana) as heads_stream, a_working_stream(laptop, pbx) as stream:
        assert heads_stream.next()["data"]["deal_title"] == "Website redesign"
        admin("user", "passwd", "ana", "--password-stdin", stdin=NEW_PASSWORD + "\n")
        budi_calls(pbx)
        assert_ends_without_a_pop(stream)
        # The head's stream is not hers: it keeps its pops.
        assert heads_stream.next()["data"]["deal_title"] == "Website redesign"
    assert_signed_out(laptop)
    assert_signed_out(phone)
    assert hana.get("/board").status == 200
    assert Client(web.url).sign_in("ana", PASSWORD).status == 401
    assert Client(web.url).sign_in("ana", NEW_PASSWORD).status == 303


def test_the_demo_rerun_signs_its_users_out_with_their_old_password(web, engine, settings):
    first = demo.ensure_demo(engine, settings, password="first demo password")
    head = signed_in(web, "head", first.password)
    assert head.get("/board").status == 200
    again = demo.ensure_demo(engine, settings, password="second demo password")
    assert not again.created and "head" in again.logins
    assert_signed_out(head)
