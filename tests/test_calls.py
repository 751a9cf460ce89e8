"""Call services directly: the decisions the hooks hand to the dialplan."""

from datetime import timedelta

from factories import PBX, at, make_contact, make_pipeline, make_user
from sqlmodel import select

from pbx_crm.funnel import calls, deals
from pbx_crm.models import Call, Contact, Deal
from pbx_crm.rules.phones import ExtensionPlan, classify_caller

PLAN = ExtensionPlan.parse("100-199")


def caller(number):
    return classify_caller(number, region="ID", extensions=PLAN)


def ring(session, uniqueid, number="+62 812-3456-7890", *, create_deals=True):
    return calls.record_inbound_call(session, uniqueid=uniqueid, linkedid=uniqueid,
                                     caller=caller(number), caller_name="Budi", did="2150001",
                                     create_deals=create_deals, region="ID", now=at(0))


def test_an_unknown_caller_is_new_even_when_calls_create_no_deals(session):
    make_pipeline(session)

    first = ring(session, "1.1", create_deals=False)
    again = ring(session, "1.1", create_deals=False)

    assert first.status == again.status == calls.NEW
    assert (first.deal_id, first.contact_id) == (None, None)
    assert session.exec(select(Contact)).all() == [] and session.exec(select(Deal)).all() == []


def test_an_answer_on_a_phone_that_is_no_sellers_leaves_the_answer_to_the_device(session):
    make_pipeline(session)
    ana = make_user(session, "ana", extensions=["101"])
    lookup = ring(session, "2.1")

    # A FreePBX ring group answers on Local/600@from-internal before the phone itself does.
    calls.record_answer(session, uniqueid="2.1", extension="600", now=at(1))
    calls.record_answer(session, uniqueid="2.1", extension="101", now=at(1) + timedelta(1))

    call = session.exec(select(Call)).one()
    assert (call.answered_exten, call.answered_by_id) == ("101", ana.user_id)
    assert session.get(Deal, lookup.deal_id).owner_id == ana.user_id


def test_an_internal_caller_is_recorded_as_an_internal_call(session):
    make_pipeline(session)
    lookup = ring(session, "3.1", "102")
    assert lookup.status == calls.INTERNAL
    assert session.exec(select(Call.direction)).one() == "internal"
    assert PBX.name == "pbx"


def test_a_click_to_call_lands_on_the_deal_the_seller_clicked(session):
    make_pipeline(session)
    ana = make_user(session, "ana", extensions=["101"])
    older = ring(session, "4.1").deal_id
    clicked = deals.create_deal(session, ana, title="Second project", contact_id=session.get(
        Deal, older).contact_id).id

    by_number = calls.record_outbound_call(session, uniqueid="5.1", linkedid="5.1",
                                           extension="101", dialed=caller("081234567890"))
    by_click = calls.record_outbound_call(session, uniqueid="6.1", linkedid="6.1",
                                          extension="101", dialed=caller("081234567890"),
                                          clicked_deal_id=clicked)

    # The number alone finds the contact's most recent open deal; the click says which one.
    assert by_number.deal_id == clicked and by_click.deal_id == clicked
    older_call = calls.record_outbound_call(session, uniqueid="7.1", linkedid="7.1",
                                            extension="101", dialed=caller("081234567890"),
                                            clicked_deal_id=older)
    assert older_call.deal_id == older


def test_known_callers_calls_are_recorded_once_each_with_their_counts_and_pops(session):
    """Known callers' calls take the short path (a few plain statements): each call once,
    each deal touched, a deal counted once among the day's deals called, each browser popped
    once per call, and the daily counts equal to a rebuild from the calls."""
    from pbx_crm.funnel import events
    from pbx_crm.reporting import days_rebuild
    from pbx_crm.models import Event

    make_pipeline(session)
    head = make_user(session, "hana", role="head")
    ana = make_user(session, "ana", extensions=["101"])
    customers = {}
    for name, phone in (("Adi", "+62 812-1111-0001"), ("Bayu", "+62 812-1111-0002")):
        contact = make_contact(session, name=name, phones=(phone,))
        deal = deals.create_deal(session, ana, title=f"Deal {name}", contact_id=contact.id,
                                 now=at(-60))
        customers[name] = (phone, deal.id)
    # Bayu rang earlier today, one at a time: his deal is among the day's deals called.
    ring(session, "7.0", customers["Bayu"][0])
    # The AMI listener popped the first call on Ana's phone before the recording came.
    events.emit(session, events.RINGING, target_user_id=ana.user_id, payload={},
                linkedid="7.1")

    def ringing(uniqueid, name, minutes):
        number = caller(customers[name][0])
        lookup = calls.lookup_caller(session, uniqueid=uniqueid, caller=number,
                                     create_deals=True)
        assert (lookup.status, lookup.deal_id) == (calls.FOUND, customers[name][1])
        recorded = calls.record_inbound_call(
            session, uniqueid=uniqueid, linkedid=uniqueid, caller=number, caller_name=name,
            did="2150001", create_deals=True, region="ID", now=at(minutes), looked_up=lookup)
        assert recorded.deal_id == customers[name][1]

    ringing("7.1", "Adi", 1)
    ringing("7.2", "Bayu", 2)
    ringing("7.3", "Adi", 3)
    ringing("7.2", "Bayu", 4)  # the same call again (a replay)
    ringing("7.0", "Bayu", 5)  # recorded before

    recorded = {c.uniqueid: c for c in session.exec(select(Call))}
    assert sorted(recorded) == ["7.0", "7.1", "7.2", "7.3"]
    assert recorded["7.2"].ringing_at == at(2) and recorded["7.0"].ringing_at == at(0)
    assert recorded["7.3"].deal_id == customers["Adi"][1]
    touched = dict(session.exec(select(Deal.id, Deal.last_activity_at)).all())
    assert touched == {customers["Adi"][1]: at(3), customers["Bayu"][1]: at(2)}
    pops = sorted((e.linkedid, e.target_user_id or 0) for e in session.exec(
        select(Event).where(Event.kind == events.RINGING)))
    assert pops == [("7.0", 0), ("7.0", ana.user_id), ("7.1", 0), ("7.1", ana.user_id),
                    ("7.2", 0), ("7.2", ana.user_id), ("7.3", 0), ("7.3", ana.user_id)]
    assert head.user_id  # heads read the pops addressed to nobody in particular

    session.flush()
    kept = days_rebuild.histogram_totals(session)["calls"]
    assert list(kept.values()) == [(4, 0, 2)]  # four calls; Adi's and Bayu's deals
    days_rebuild.rebuild(session, time_zone="Asia/Jakarta")
    assert days_rebuild.histogram_totals(session)["calls"] == kept
