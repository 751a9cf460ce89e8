"""The Kanban board: each column's cards a page at a time, and each column's count and money.

The board below: two calls waiting in Unsorted, Ana's and Budi's deals in the working columns.
"""

import pytest

from factories import at, make_deal, make_pipeline, make_unsorted_deal, make_user, stages_by_name
from pbx_crm.funnel import board
from pbx_crm.funnel.board import ColumnTotal


@pytest.fixture
def sales(session):
    pipeline = make_pipeline(session)
    stage = stages_by_name(session, pipeline)
    people = {"ana": make_user(session, "ana"), "budi": make_user(session, "budi"),
              "hana": make_user(session, "hana", role="head")}
    ana, budi = people["ana"], people["budi"]
    cards = {
        "call 1": make_unsorted_deal(session, amount_minor=0, now=at(0)),
        "call 2": make_unsorted_deal(session, amount_minor=70, now=at(1)),
        "ana shop": make_deal(session, ana, amount_minor=100, now=at(2)),
        "ana app": make_deal(session, ana, amount_minor=200, now=at(3)),
        "budi erp": make_deal(session, budi, amount_minor=1000, now=at(4)),
        "ana logo": make_deal(session, ana, amount_minor=50, now=at(5),
                              stage_id=stage["Commercial proposal"].id),
    }
    return pipeline, stage, people, cards


def titles_of(cards_by_name, deals) -> list[str]:
    names = {deal.id: name for name, deal in cards_by_name.items()}
    return [names[deal.id] for deal in deals]


def test_a_column_shows_the_newest_cards_first_a_page_at_a_time(session):
    pipeline = make_pipeline(session)
    opportunity = stages_by_name(session, pipeline)["Opportunity"]
    ana = make_user(session, "ana")
    # Deals 2 and 3 were created at the same moment, across a page break: the id tells them apart.
    for n, minute in enumerate([0, 1, 2, 2, 3]):
        make_deal(session, ana, title=f"Deal {n}", now=at(minute))

    shown, after = [], None
    for _ in range(3):
        page = board.column_cards(session, ana, opportunity, after=after, limit=2)
        shown.append([deal.title for deal in page])
        after = (page[-1].created_at, page[-1].id)
    assert shown == [["Deal 4", "Deal 3"], ["Deal 2", "Deal 1"], ["Deal 0"]]
    assert board.column_cards(session, ana, opportunity, after=after) == []


def test_a_seller_sees_their_own_cards_and_the_shared_unsorted_column(session, sales):
    _, stage, people, cards = sales
    ana = people["ana"]
    assert titles_of(cards, board.column_cards(session, ana, stage["Unsorted"])) == [
        "call 2", "call 1"]
    assert titles_of(cards, board.column_cards(session, ana, stage["Opportunity"])) == [
        "ana app", "ana shop"]
    # Asking for Budi's cards does not widen a seller's view.
    assert titles_of(cards, board.column_cards(session, ana, stage["Opportunity"],
                                               owner_id=people["budi"].user_id)) == [
        "ana app", "ana shop"]


def test_a_head_sees_every_card_or_one_sellers(session, sales):
    _, stage, people, cards = sales
    hana, budi = people["hana"], people["budi"]
    assert titles_of(cards, board.column_cards(session, hana, stage["Opportunity"])) == [
        "budi erp", "ana app", "ana shop"]
    assert titles_of(cards, board.column_cards(session, hana, stage["Opportunity"],
                                               owner_id=budi.user_id)) == ["budi erp"]
    # Unsorted cards are nobody's yet, so they stay in view whoever the head filters on.
    assert titles_of(cards, board.column_cards(session, hana, stage["Unsorted"],
                                               owner_id=budi.user_id)) == ["call 2", "call 1"]


def test_column_totals_count_and_sum_the_cards_each_board_shows(session, sales):
    pipeline, stage, people, _ = sales
    unsorted, opportunity, proposal = (stage[n].id for n in
                                       ("Unsorted", "Opportunity", "Commercial proposal"))
    waiting = ColumnTotal(unsorted, 2, 70)

    assert board.column_totals(session, people["hana"], pipeline.id) == {
        unsorted: waiting, opportunity: ColumnTotal(opportunity, 3, 1300),
        proposal: ColumnTotal(proposal, 1, 50)}
    assert board.column_totals(session, people["ana"], pipeline.id) == {
        unsorted: waiting, opportunity: ColumnTotal(opportunity, 2, 300),
        proposal: ColumnTotal(proposal, 1, 50)}
    assert board.column_totals(session, people["hana"], pipeline.id,
                               owner_id=people["budi"].user_id) == {
        unsorted: waiting, opportunity: ColumnTotal(opportunity, 1, 1000)}
    assert board.column_totals(session, people["budi"], pipeline.id,
                               owner_id=people["ana"].user_id) == {
        unsorted: waiting, opportunity: ColumnTotal(opportunity, 1, 1000)}


def test_card_rows_are_the_same_cards_as_the_column_pages(session, sales):
    """The page the web board reads (plain rows from statements built once) holds the same
    cards, in the same order, as the column query, for every kind of board and page."""
    _, stage, people, _ = sales
    hana, ana, budi = people["hana"], people["ana"], people["budi"]
    for actor, owner_id in ((hana, None), (hana, budi.user_id), (ana, None),
                            (ana, budi.user_id)):
        for column in stage.values():
            cards = board.column_cards(session, actor, column, owner_id=owner_id, limit=1)
            rows = board.column_card_rows(session, actor, column, owner_id=owner_id, limit=1)
            assert [row.id for row in rows] == [deal.id for deal in cards]
            while cards:
                after = (cards[-1].created_at, cards[-1].id)
                cards = board.column_cards(session, actor, column, owner_id=owner_id,
                                           after=after, limit=1)
                rows = board.column_card_rows(session, actor, column, owner_id=owner_id,
                                              after=after, limit=1)
                assert [row.id for row in rows] == [deal.id for deal in cards]
