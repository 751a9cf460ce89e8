"""Deals through the funnel: a seller's own deals, the PBX's Unsorted ones, and the head over all.

Each test is one scenario on the "Sales" funnel (Unsorted, Opportunity … Closing, Won, Lost)
with two sellers, Ana and Budi, and their head, Hana. Races live in ``test_take_race.py``.
"""

import pytest
from sqlmodel import func, select

from factories import (
    ADMIN,
    PBX,
    at,
    audit_of,
    history_of,
    make_contact,
    make_deal,
    make_pipeline,
    make_unsorted_deal,
    make_user,
    stages_by_name,
    timeline_of,
)
from pbx_crm.funnel import deals
from pbx_crm.people import users
from pbx_crm.rules import funnel
from pbx_crm.errors import (
    AlreadyTaken,
    Conflict,
    DealClosed,
    Forbidden,
    NotFound,
    NumberConflict,
    StaleVersion,
    ValidationError,
)
from pbx_crm.rules.funnel import Actor
from pbx_crm.models import Contact, Deal

CALLER = "+6281234567890"


@pytest.fixture
def pipeline(session):
    return make_pipeline(session)


@pytest.fixture
def stage(session, pipeline):
    """The Sales funnel's stages by name: ``stage["Won"].id``."""
    return stages_by_name(session, pipeline)


@pytest.fixture
def ana(session):
    return make_user(session, "ana")


@pytest.fixture
def budi(session):
    return make_user(session, "budi")


@pytest.fixture
def hana(session):
    return make_user(session, "hana", role="head")


def count(session, model) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


# --- creating -----------------------------------------------------------------------------


def test_a_seller_creates_a_deal_of_their_own_in_the_first_working_stage(session, stage, ana):
    deal = make_deal(session, ana, amount_minor=15_000_000, now=at(0))
    assert (deal.owner_id, deal.created_by_id, deal.stage_id) == (
        ana.user_id, ana.user_id, stage["Opportunity"].id)
    assert (deal.source, deal.currency, deal.version) == ("manual", "IDR", 1)
    assert deal.created_at == deal.stage_entered_at == at(0)


def test_creating_a_deal_writes_its_first_history_row_timeline_entry_and_audit_row(
        session, stage, ana):
    deal = make_deal(session, ana, now=at(0))
    [created] = history_of(session, deal)
    assert (created.from_stage_id, created.to_stage_id, created.from_entered_at) == (
        None, stage["Opportunity"].id, None)
    assert (created.moved_by_id, created.moved_at) == (ana.user_id, at(0))
    assert [(e.kind, e.body) for e in timeline_of(session, deal)] == [
        ("created", "Deal created in Opportunity")]
    [audited] = audit_of(session, "deal", deal.id)
    assert (audited.action, audited.actor, audited.changes["owner"]) == (
        "create", "ana", ana.user_id)


def test_a_head_creates_a_deal_for_a_seller(session, stage, ana, hana):
    deal = make_deal(session, hana, owner_id=ana.user_id)
    assert (deal.owner_id, deal.created_by_id, deal.stage_id) == (
        ana.user_id, hana.user_id, stage["Opportunity"].id)


def test_a_seller_cannot_create_a_deal_for_another_seller(session, pipeline, ana, budi):
    with pytest.raises(Forbidden):
        make_deal(session, ana, owner_id=budi.user_id)
    assert count(session, Deal) == 0


def test_a_deal_the_pbx_creates_waits_in_unsorted_with_no_owner(session, stage):
    deal = make_unsorted_deal(session, now=at(0))
    assert (deal.stage_id, deal.owner_id, deal.created_by_id, deal.source) == (
        stage["Unsorted"].id, None, None, "call")
    assert [row.to_stage_id for row in history_of(session, deal)] == [stage["Unsorted"].id]
    assert audit_of(session, "deal", deal.id)[0].actor == "pbx"


@pytest.mark.parametrize("title", ["", "   ", "x" * 201], ids=["empty", "blank", "201-chars"])
def test_a_deal_needs_a_title_of_at_most_200_characters(session, pipeline, ana, title):
    with pytest.raises(ValidationError) as refused:
        make_deal(session, ana, title=title)
    assert refused.value.field == "title"
    assert make_deal(session, ana, title="x" * 200).title == "x" * 200


@pytest.mark.parametrize("amount", [-1, True, 12.5, "100", 10**15],
                         ids=["negative", "bool", "float", "text", "too-big"])
def test_an_amount_is_a_whole_number_of_minor_units_from_zero(session, pipeline, ana, amount):
    with pytest.raises(ValidationError) as refused:
        make_deal(session, ana, amount_minor=amount)
    assert refused.value.field == "amount"
    assert count(session, Deal) == 0


@pytest.mark.parametrize("priority", [3, -1, "urgent", None])
def test_a_priority_is_low_normal_or_high(session, pipeline, ana, priority):
    with pytest.raises(ValidationError) as refused:
        make_deal(session, ana, priority=priority)
    assert refused.value.field == "priority"
    assert make_deal(session, ana, priority=2).priority == 2


def test_a_deal_starts_in_a_stage_of_its_own_pipeline(session, pipeline, ana):
    partners = make_pipeline(session, "Partners", stages=[("Lead", "open")])
    lead = stages_by_name(session, partners)["Lead"]
    with pytest.raises(ValidationError, match="another pipeline"):
        make_deal(session, ana, pipeline_id=pipeline.id, stage_id=lead.id)


def test_a_deal_starts_in_a_working_stage_not_in_an_outcome(session, stage, ana):
    for outcome in ("Won", "Lost"):
        with pytest.raises(ValidationError, match="working stage"):
            make_deal(session, ana, stage_id=stage[outcome].id)


def test_unsorted_is_for_ownerless_deals_and_only_for_them(session, stage, ana):
    with pytest.raises(ValidationError, match="nobody owns"):
        make_deal(session, ana, stage_id=stage["Unsorted"].id)
    with pytest.raises(ValidationError, match="needs an owner"):
        make_unsorted_deal(session, stage_id=stage["Opportunity"].id)
    assert count(session, Deal) == 0


def test_a_deal_cannot_go_to_an_inactive_seller(session, pipeline, budi, hana):
    users.set_active(session, ADMIN, "budi", False)
    with pytest.raises(ValidationError) as refused:
        make_deal(session, hana, owner_id=budi.user_id)
    assert refused.value.field == "owner"


def test_a_deal_cannot_name_an_unknown_contact(session, pipeline, ana):
    with pytest.raises(NotFound, match="contact #999"):
        make_deal(session, ana, contact_id=999)
    assert count(session, Deal) == 0


def test_a_title_with_markup_or_sql_is_stored_as_the_text_it_is(session, pipeline, ana):
    title = "<script>alert('hi')</script> Robert'); DROP TABLE deals; -- & co"
    deal = make_deal(session, ana, title=title)
    session.expire_all()
    assert session.exec(select(Deal.title).where(Deal.id == deal.id)).one() == title
    assert count(session, Deal) == 1


# --- moving -------------------------------------------------------------------------------


def test_a_move_records_who_moved_the_deal_where_and_how_long_it_sat_before(
        session, stage, ana):
    deal = make_deal(session, ana, now=at(0))
    deals.move_deal(session, ana, deal.id, to_stage_id=stage["Commercial proposal"].id,
                    expected_version=1, now=at(90))
    deals.move_deal(session, ana, deal.id, to_stage_id=stage["Document coordination"].id,
                    expected_version=2, now=at(200))
    assert (deal.stage_id, deal.version, deal.stage_entered_at, deal.last_activity_at) == (
        stage["Document coordination"].id, 3, at(200), at(200))
    moves = [(h.from_stage_id, h.to_stage_id, h.from_entered_at, h.moved_at, h.moved_by_id)
             for h in history_of(session, deal)[1:]]
    assert moves == [
        (stage["Opportunity"].id, stage["Commercial proposal"].id, at(0), at(90), ana.user_id),
        (stage["Commercial proposal"].id, stage["Document coordination"].id, at(90), at(200),
         ana.user_id),
    ]
    assert [e.body for e in timeline_of(session, deal) if e.kind == "stage_move"] == [
        "Opportunity → Commercial proposal", "Commercial proposal → Document coordination"]
    assert [a.action for a in audit_of(session, "deal", deal.id)] == ["create", "move", "move"]


def test_a_move_on_an_old_version_is_refused_naming_the_stage_the_deal_is_in_now(
        session, stage, ana, hana):
    deal = make_deal(session, ana)
    deals.move_deal(session, ana, deal.id, to_stage_id=stage["Commercial proposal"].id,
                    expected_version=1)
    with pytest.raises(StaleVersion, match="Commercial proposal") as refused:
        deals.move_deal(session, hana, deal.id, to_stage_id=stage["Closing"].id,
                        expected_version=1)
    assert refused.value.status == 409
    assert (deal.stage_id, deal.version) == (stage["Commercial proposal"].id, 2)
    assert len(history_of(session, deal)) == 2


def test_a_closed_deal_does_not_move_until_it_is_reopened(session, stage, ana):
    deal = make_deal(session, ana)
    deals.close_won(session, ana, deal.id, expected_version=1)
    with pytest.raises(DealClosed, match="won"):
        deals.move_deal(session, ana, deal.id, to_stage_id=stage["Closing"].id,
                        expected_version=2)
    deals.reopen_deal(session, ana, deal.id, expected_version=2)
    deals.move_deal(session, ana, deal.id, to_stage_id=stage["Closing"].id, expected_version=3)
    assert deal.stage_id == stage["Closing"].id


@pytest.mark.parametrize("reason", [None, "", "   ", "x" * 501],
                         ids=["none", "empty", "blank", "501-chars"])
def test_a_lost_deal_needs_a_reason_of_at_most_500_characters(session, stage, ana, reason):
    deal = make_deal(session, ana)
    with pytest.raises(ValidationError) as refused:
        deals.close_lost(session, ana, deal.id, reason=reason, expected_version=1)
    assert refused.value.field == "lost_reason"
    assert (deal.stage_id, deal.closed_at) == (stage["Opportunity"].id, None)


def test_closing_sets_closed_at_and_reopening_returns_to_the_stage_it_was_closed_from(
        session, stage, ana):
    deal = make_deal(session, ana, now=at(0))
    deals.move_deal(session, ana, deal.id, to_stage_id=stage["Implementation"].id,
                    expected_version=1, now=at(10))
    deals.close_lost(session, ana, deal.id, reason="  Went with a competitor ",
                     expected_version=2, now=at(20))
    assert (deal.stage_id, deal.closed_at, deal.lost_reason) == (
        stage["Lost"].id, at(20), "Went with a competitor")

    deals.reopen_deal(session, ana, deal.id, expected_version=3, now=at(30))
    assert (deal.stage_id, deal.closed_at, deal.lost_reason) == (
        stage["Implementation"].id, None, None)

    deals.close_won(session, ana, deal.id, expected_version=4, now=at(40))
    assert (deal.stage_id, deal.closed_at, deal.lost_reason) == (stage["Won"].id, at(40), None)


def test_reopening_a_deal_that_is_open_is_refused(session, stage, ana):
    deal = make_deal(session, ana)
    with pytest.raises(Conflict, match="open already") as refused:
        deals.reopen_deal(session, ana, deal.id, expected_version=1)
    assert type(refused.value) is Conflict


def test_a_deal_closed_straight_from_unsorted_reopens_in_the_first_working_stage(
        session, stage, ana):
    deal = make_unsorted_deal(session)
    deals.close_won(session, ana, deal.id, expected_version=1)
    # Two changes: the seller took the deal, then closed it.
    assert (deal.stage_id, deal.owner_id, deal.version) == (stage["Won"].id, ana.user_id, 3)
    deals.reopen_deal(session, ana, deal.id, expected_version=3)
    assert deal.stage_id == stage["Opportunity"].id


def test_a_deal_with_an_owner_cannot_go_back_to_unsorted(session, stage, ana, hana):
    deal = make_deal(session, ana)
    for actor in (ana, hana):
        with pytest.raises(ValidationError, match="back to Unsorted"):
            deals.move_deal(session, actor, deal.id, to_stage_id=stage["Unsorted"].id,
                            expected_version=1)


def test_a_deal_cannot_move_to_a_stage_of_another_pipeline(session, pipeline, ana):
    partners = make_pipeline(session, "Partners", stages=[("Lead", "open")])
    deal = make_deal(session, ana, pipeline_id=pipeline.id)
    with pytest.raises(ValidationError, match="another pipeline"):
        deals.move_deal(session, ana, deal.id,
                        to_stage_id=stages_by_name(session, partners)["Lead"].id,
                        expected_version=1)


def test_a_seller_dragging_an_unsorted_card_takes_it(session, stage, ana):
    deal = make_unsorted_deal(session)
    deals.move_deal(session, ana, deal.id, to_stage_id=stage["Commercial proposal"].id,
                    expected_version=1)
    assert (deal.owner_id, deal.stage_id) == (ana.user_id, stage["Commercial proposal"].id)
    # Taking it passes the first working stage, as the history shows.
    assert [(h.from_stage_id, h.to_stage_id) for h in history_of(session, deal)[1:]] == [
        (stage["Unsorted"].id, stage["Opportunity"].id),
        (stage["Opportunity"].id, stage["Commercial proposal"].id)]
    assert [e.action for e in audit_of(session, "deal", deal.id)][-2:] == ["take", "move"]


def test_a_head_dragging_an_unsorted_card_is_told_to_assign_it_first(session, stage, hana):
    deal = make_unsorted_deal(session)
    with pytest.raises(ValidationError, match="Assign") as refused:
        deals.move_deal(session, hana, deal.id, to_stage_id=stage["Opportunity"].id,
                        expected_version=1)
    assert refused.value.field == "owner"
    assert (deal.stage_id, deal.owner_id, deal.version) == (stage["Unsorted"].id, None, 1)


def test_moving_a_deal_to_the_stage_it_is_in_changes_nothing(session, stage, ana):
    deal = make_deal(session, ana)
    deals.move_deal(session, ana, deal.id, to_stage_id=stage["Opportunity"].id,
                    expected_version=1)
    assert deal.version == 1
    assert len(history_of(session, deal)) == 1
    assert [e.kind for e in timeline_of(session, deal)] == ["created"]


# --- taking and assigning -----------------------------------------------------------------


def test_a_seller_takes_an_unsorted_deal_into_the_first_working_stage(session, stage, ana):
    deal = make_unsorted_deal(session, now=at(0))
    deals.take_deal(session, ana, deal.id, now=at(5))
    assert (deal.owner_id, deal.stage_id, deal.version, deal.stage_entered_at) == (
        ana.user_id, stage["Opportunity"].id, 2, at(5))
    taken = history_of(session, deal)[-1]
    assert (taken.from_stage_id, taken.to_stage_id, taken.from_entered_at, taken.moved_by_id) == (
        stage["Unsorted"].id, stage["Opportunity"].id, at(0), ana.user_id)
    assert timeline_of(session, deal)[-1].body == "Taken by Ana"
    assert audit_of(session, "deal", deal.id)[-1].action == "take"


def test_taking_a_deal_someone_owns_is_refused_naming_the_owner(session, stage, ana, budi):
    unsorted = make_unsorted_deal(session)
    deals.take_deal(session, ana, unsorted.id)
    anas_own = make_deal(session, ana)
    for deal in (unsorted, anas_own):
        with pytest.raises(AlreadyTaken, match="taken by Ana") as refused:
            deals.take_deal(session, budi, deal.id)
        assert refused.value.status == 409
        assert deal.owner_id == ana.user_id


def test_the_pbx_cannot_take_a_deal(session, stage):
    deal = make_unsorted_deal(session)
    with pytest.raises(ValidationError, match="Only a user"):
        deals.take_deal(session, PBX, deal.id)
    assert deal.owner_id is None


def test_a_head_assigns_an_unsorted_deal_to_a_seller(session, stage, ana, hana):
    deal = make_unsorted_deal(session)
    deals.assign_deal(session, hana, deal.id, owner_id=ana.user_id)
    assert (deal.owner_id, deal.stage_id) == (ana.user_id, stage["Opportunity"].id)
    assert history_of(session, deal)[-1].moved_by_id == hana.user_id


def test_a_head_hands_a_deal_from_one_seller_to_another(session, stage, ana, budi, hana):
    deal = make_deal(session, ana)
    deals.assign_deal(session, hana, deal.id, owner_id=budi.user_id, expected_version=1)
    assert (deal.owner_id, deal.stage_id, deal.version) == (
        budi.user_id, stage["Opportunity"].id, 2)
    assigned = timeline_of(session, deal)[-1]
    facts = dict(assigned.data)
    said = facts.pop("say")  # the body's words, for the reader's language
    assert (assigned.kind, facts) == (
        "assignment", {"from": ana.user_id, "to": budi.user_id})
    assert said == {"template": "Assigned to %(name)s", "values": {"name": "Budi"}}
    assert audit_of(session, "deal", deal.id)[-1].action == "assign"


def test_only_a_head_assigns_deals(session, stage, ana, budi):
    for deal in (make_unsorted_deal(session), make_deal(session, ana)):
        with pytest.raises(Forbidden, match="Only a head"):
            deals.assign_deal(session, ana, deal.id, owner_id=budi.user_id)


def test_assigning_is_refused_on_an_old_version_a_closed_deal_or_an_inactive_seller(
        session, stage, ana, budi, hana):
    deal = make_deal(session, ana)
    deals.update_deal(session, ana, deal.id, title="Website and shop", expected_version=1)
    with pytest.raises(StaleVersion):
        deals.assign_deal(session, hana, deal.id, owner_id=budi.user_id, expected_version=1)
    users.set_active(session, ADMIN, "budi", False)
    with pytest.raises(ValidationError, match="not an active user"):
        deals.assign_deal(session, hana, deal.id, owner_id=budi.user_id)
    deals.close_won(session, ana, deal.id, expected_version=2)
    with pytest.raises(DealClosed):
        deals.assign_deal(session, hana, deal.id, owner_id=hana.user_id)
    assert deal.owner_id == ana.user_id


# --- editing and notes --------------------------------------------------------------------


def test_updating_a_deal_changes_its_fields_bumps_its_version_and_is_audited(
        session, pipeline, ana):
    contact = make_contact(session)
    deal = make_deal(session, ana, amount_minor=100)
    deals.update_deal(session, ana, deal.id, expected_version=1, title="  Shop   redesign ",
                      amount_minor=250, priority=2, contact_id=contact.id, now=at(60))
    assert (deal.title, deal.amount_minor, deal.priority, deal.contact_id) == (
        "Shop redesign", 250, 2, contact.id)
    assert (deal.version, deal.updated_at) == (2, at(60))
    updated = audit_of(session, "deal", deal.id)[-1]
    assert (updated.action, updated.changes["before"]["amount_minor"],
            updated.changes["after"]["amount_minor"]) == ("update", 100, 250)


def test_an_update_is_checked_like_a_new_deal_and_against_the_version(session, pipeline, ana):
    deal = make_deal(session, ana)
    with pytest.raises(ValidationError):
        deals.update_deal(session, ana, deal.id, expected_version=1, amount_minor=-5)
    with pytest.raises(ValidationError):
        deals.update_deal(session, ana, deal.id, expected_version=1, title=" ")
    with pytest.raises(NotFound):
        deals.update_deal(session, ana, deal.id, expected_version=1, contact_id=999)
    deals.update_deal(session, ana, deal.id, expected_version=1, title="Version two")
    with pytest.raises(StaleVersion):
        deals.update_deal(session, ana, deal.id, expected_version=1, title="Lost update")
    assert (deal.title, deal.version) == ("Version two", 2)


def test_a_note_touches_the_deal_without_making_a_colleagues_drag_stale(
        session, stage, ana, hana):
    deal = make_deal(session, ana, now=at(0))
    note = deals.add_note(session, ana, deal.id, "  Called back, wants a quote  ", now=at(30))
    assert (note.kind, note.body, note.author_id) == (
        "note", "Called back, wants a quote", ana.user_id)
    session.refresh(deal)
    assert (deal.version, deal.last_activity_at) == (1, at(30))
    deals.move_deal(session, hana, deal.id, to_stage_id=stage["Commercial proposal"].id,
                    expected_version=1)
    assert deal.stage_id == stage["Commercial proposal"].id


@pytest.mark.parametrize("body", ["", "   ", "x" * 10_001], ids=["empty", "blank", "too-long"])
def test_a_note_has_something_to_say(session, pipeline, ana, body):
    deal = make_deal(session, ana)
    with pytest.raises(ValidationError):
        deals.add_note(session, ana, deal.id, body)
    assert [e.kind for e in timeline_of(session, deal)] == ["created"]


# --- who sees what ------------------------------------------------------------------------

AGAINST_ANOTHER_SELLERS_DEAL = {
    "read": lambda s, seller, deal, stage: deals.get_deal(s, seller, deal.id),
    "history": lambda s, seller, deal, stage: deals.history_of(s, seller, deal.id),
    "move": lambda s, seller, deal, stage: deals.move_deal(
        s, seller, deal.id, to_stage_id=stage["Closing"].id, expected_version=1),
    "update": lambda s, seller, deal, stage: deals.update_deal(
        s, seller, deal.id, title="Mine now", expected_version=1),
    "note": lambda s, seller, deal, stage: deals.add_note(s, seller, deal.id, "Hello"),
    "win": lambda s, seller, deal, stage: deals.close_won(s, seller, deal.id,
                                                          expected_version=1),
    "lose": lambda s, seller, deal, stage: deals.close_lost(
        s, seller, deal.id, reason="Too expensive", expected_version=1),
}


@pytest.mark.parametrize("attempt", AGAINST_ANOTHER_SELLERS_DEAL.values(),
                         ids=AGAINST_ANOTHER_SELLERS_DEAL.keys())
def test_a_seller_cannot_touch_another_sellers_deal(session, stage, ana, budi, attempt):
    deal = make_deal(session, budi)
    with pytest.raises(Forbidden, match="another seller") as refused:
        attempt(session, ana, deal, stage)
    assert refused.value.status == 403
    assert (deal.version, deal.title, len(timeline_of(session, deal))) == (
        1, "Website redesign", 1)


def test_a_seller_cannot_reopen_another_sellers_closed_deal(session, stage, ana, budi):
    deal = make_deal(session, budi)
    deals.close_won(session, budi, deal.id, expected_version=1)
    with pytest.raises(Forbidden):
        deals.reopen_deal(session, ana, deal.id, expected_version=2)


def test_sellers_read_the_shared_unsorted_deals_and_a_head_reads_every_deal(
        session, pipeline, ana, budi, hana):
    unsorted = make_unsorted_deal(session)
    budis = make_deal(session, budi)
    assert deals.get_deal(session, ana, unsorted.id).id == unsorted.id
    assert {deals.get_deal(session, hana, d.id).id for d in (unsorted, budis)} == {
        unsorted.id, budis.id}


SELLER = Actor(user_id=1, role="seller", name="ana")


@pytest.mark.parametrize("actor, owner_id, in_unsorted, may_read", [
    (SELLER, 1, False, True),                      # her own deal
    (SELLER, 2, False, False),                     # another seller's deal
    (SELLER, None, True, True),                    # the shared Unsorted column
    (SELLER, 2, True, False),                      # never happens, still not hers
    (Actor(3, "head", "hana"), 2, False, True),    # a head sees all
    (Actor(3, "head", "hana"), None, True, True),
    (Actor.system("pbx"), 2, False, True),         # the PBX and robots too
], ids=["own", "another-sellers", "unsorted", "owned-in-unsorted", "head", "head-unsorted",
        "system"])
def test_who_may_read_a_deal(actor, owner_id, in_unsorted, may_read):
    assert funnel.can_read_deal(actor, owner_id=owner_id, in_unsorted=in_unsorted) is may_read


# --- the deal for a caller ----------------------------------------------------------------


def call_from(session, e164=CALLER, *, name="Siti Rahma", create=True):
    return deals.deal_for_caller(session, PBX, e164=e164, caller_name=name, region="ID",
                                 create=create)


def test_a_new_caller_gets_a_contact_and_an_unsorted_deal(session, stage):
    found = call_from(session)
    assert found.created
    assert (found.deal.stage_id, found.deal.owner_id, found.deal.source, found.deal.title) == (
        stage["Unsorted"].id, None, "call", "Call from Siti Rahma")
    assert found.deal.contact_id == found.contact_id
    assert session.get(Contact, found.contact_id).name == "Siti Rahma"


def test_a_repeat_call_from_the_same_number_lands_on_the_same_open_deal(session, stage, ana):
    first = call_from(session)
    deals.take_deal(session, ana, first.deal.id)
    again = call_from(session, name="SITI R")
    assert (again.created, again.deal.id, again.contact_id) == (
        False, first.deal.id, first.contact_id)
    assert (count(session, Deal), count(session, Contact)) == (1, 1)


def test_a_known_caller_without_an_open_deal_gets_a_new_deal_on_their_contact(
        session, stage, ana):
    contact = make_contact(session, phones=[CALLER])
    won = make_deal(session, ana, contact_id=contact.id)
    deals.close_won(session, ana, won.id, expected_version=1)
    found = call_from(session)
    assert (found.created, found.contact_id, found.deal.contact_id) == (
        True, contact.id, contact.id)
    assert found.deal.id != won.id and found.deal.stage_id == stage["Unsorted"].id
    assert count(session, Contact) == 1


def test_a_number_on_two_contacts_is_a_conflict_and_nothing_is_created(session, pipeline):
    office = make_contact(session, name="PT Maju, reception", phones=[CALLER])
    boss = make_contact(session, name="Pak Joko", phones=["0812 3456 7890"])
    with pytest.raises(NumberConflict) as refused:
        call_from(session)
    assert refused.value.contact_ids == [office.id, boss.id]
    assert (count(session, Deal), count(session, Contact)) == (0, 2)


def test_a_pipeline_that_does_not_take_calls_creates_nothing(session):
    make_pipeline(session, creates_deals_from_calls=False)
    found = call_from(session)
    assert (found.contact_id, found.deal, found.created) == (None, None, False)
    assert (count(session, Deal), count(session, Contact)) == (0, 0)


def test_a_lookup_without_create_creates_nothing(session, pipeline):
    assert call_from(session, create=False) == deals.CallerDeal(None, None, created=False)
    contact = make_contact(session, phones=[CALLER])
    assert call_from(session, create=False) == deals.CallerDeal(contact.id, None,
                                                                created=False)
    assert count(session, Deal) == 0


def test_a_caller_with_a_very_long_name_still_gets_a_deal(session, stage):
    found = call_from(session, name="Ibu " + "Sri " * 60)
    assert found.created and len(found.deal.title) <= 200
