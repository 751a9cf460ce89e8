"""The board's search box: a deal found by a part of its title or of its contact's name.

Titles and names are looked up through trigram indexes (GIN ``gin_trgm_ops`` on PostgreSQL,
FTS5 trigram tables on SQLite); a text of one or two characters is matched by a scan. Either
way the answer is the same: a case-insensitive part of the text, newest first, at most
``SEARCH_LIMIT`` cards, only the deals the searcher may see.
"""

from __future__ import annotations

import logging

import pytest
from factories import (
    ADMIN,
    at,
    make_contact,
    make_deal,
    make_pipeline,
    make_unsorted_deal,
    make_user,
    stages_by_name,
)
from postgres_databases import new_postgres_database
from sqlalchemy import delete, event
from sqlalchemy import text as sql
from sqlmodel import select

from pbx_crm.funnel import calls, deals
from pbx_crm.funnel.board import SEARCH_LIMIT, search_cards
from pbx_crm.db import (
    current_revision,
    head_revision,
    transaction,
    upgrade,
)
from pbx_crm.errors import ValidationError
from pbx_crm.rules.funnel import Actor, can_read_deal
from pbx_crm.models import Contact, Deal, Pipeline, User
from pbx_crm.rules.phones import ExtensionPlan, classify_caller
from pbx_crm.sample.seed import seed_synthetic


def found(session, actor, text, **kw) -> list[str]:
    return [card.title for card in search_cards(session, actor, text, region="ID", **kw)]


@pytest.fixture
def shop(session):
    """Two sellers and a head; Ana's deals, Budi's deal, a call waiting in Unsorted."""
    pipeline = make_pipeline(session)
    ana, budi = make_user(session, "ana"), make_user(session, "budi")
    hana = make_user(session, "hana", role="head")
    santoso = make_contact(session, "Budi Santoso", phones=["+62 812-3456-7890"])
    ruko = make_contact(session, "Ñoman Pérez", phones=["+62 813-1111-2222"])
    sari = make_contact(session, "Sari Wulandari", phones=["+62 857-9999-0000"])
    deals_by_name = {
        "website": make_deal(session, ana, title="Website redesign", contact_id=santoso.id,
                             now=at(0)),
        "ruko": make_deal(session, ana, title="Ruko Jalan Ñusa Indah: pemasangan PABX",
                          contact_id=ruko.id, now=at(1)),
        "erp": make_deal(session, budi, title="ERP rollout", contact_id=sari.id, now=at(2)),
        "waiting": make_unsorted_deal(session, title="Call from +62 857-9999-0000",
                                      contact_id=sari.id, now=at(3)),
    }
    return {"pipeline": pipeline, "ana": ana, "budi": budi, "hana": hana, "santoso": santoso,
            "sari": sari, **deals_by_name}


# --- what is found ---------------------------------------------------------------------------


def test_a_deal_is_found_by_any_part_of_its_title(session, shop):
    assert found(session, shop["ana"], "redesign") == ["Website redesign"]
    assert found(session, shop["ana"], "site re") == ["Website redesign"]
    assert found(session, shop["ana"], "Website redesign") == ["Website redesign"]
    assert found(session, shop["ana"], "redesigns") == []


def test_a_deal_is_found_by_any_part_of_its_contacts_name(session, shop):
    assert found(session, shop["ana"], "santo") == ["Website redesign"]
    # Sari's name finds her deal waiting in Unsorted too, newest first.
    assert found(session, shop["hana"], "wulan") == ["Call from +62 857-9999-0000",
                                                     "ERP rollout"]


def test_the_letter_case_does_not_matter(session, shop):
    for text in ("WEBSITE", "bUdI sAnToSo", "website REDESIGN"):
        assert found(session, shop["ana"], text) == ["Website redesign"], text


def test_indonesian_and_accented_text_is_found_in_any_letter_case(session, shop):
    ruko = "Ruko Jalan Ñusa Indah: pemasangan PABX"
    for text in ("jalan ñ", "JALAN Ñ", "ñusa", "ÑUSA INDAH", "pemasangan pabx", "ñoman pér",
                 "PÉREZ"):
        assert found(session, shop["ana"], text) == [ruko], text
    # An accent is part of the letter: "n" is not "ñ".
    assert found(session, shop["ana"], "jalan nusa") == []


def test_one_or_two_characters_still_find_what_holds_them(session, shop):
    ana = shop["ana"]
    assert found(session, ana, "ERP") == []  # Budi's
    assert found(session, ana, "x") == ["Ruko Jalan Ñusa Indah: pemasangan PABX"]
    assert found(session, ana, "si") == ["Website redesign"]  # "Website", "Santoso"
    assert found(session, ana, "W") == ["Call from +62 857-9999-0000", "Website redesign"]
    assert found(session, shop["hana"], "rp") == ["ERP rollout"]


def test_like_wildcards_quotes_and_markup_are_taken_literally(session, shop):
    ana = shop["ana"]
    titles = ["100% uptime", "1000 phones", "snake_case", "snakeXcase", r"C:\temp share",
              'The "Big" deal', "O'Brien's PBX", "<b>bold</b> offer", "50 % off"]
    for minute, title in enumerate(titles, start=10):
        make_deal(session, ana, title=title, now=at(minute))
    assert found(session, ana, "100%") == ["100% uptime"]
    assert found(session, ana, "0%") == ["100% uptime"]
    assert found(session, ana, "%") == ["50 % off", "100% uptime"]
    assert found(session, ana, "e_c") == ["snake_case"]
    assert found(session, ana, "_") == ["snake_case"]
    assert found(session, ana, "\\te") == [r"C:\temp share"]
    assert found(session, ana, "\\") == [r"C:\temp share"]
    assert found(session, ana, '"big"') == ['The "Big" deal']
    assert found(session, ana, '"') == ['The "Big" deal']
    assert found(session, ana, "o'brien") == ["O'Brien's PBX"]
    assert found(session, ana, "<b>") == ["<b>bold</b> offer"]
    assert found(session, ana, "%%%") == []
    assert found(session, ana, "' OR 1=1 --") == []


def test_spaces_are_read_as_one_and_an_empty_search_finds_nothing(session, shop):
    assert found(session, shop["ana"], "  website \t  redesign ") == ["Website redesign"]
    assert found(session, shop["ana"], "   ") == []
    assert found(session, shop["ana"], "") == []


def test_a_search_too_long_is_refused_with_a_reason(session, shop):
    with pytest.raises(ValidationError, match="at most 100 characters"):
        search_cards(session, shop["ana"], "x" * 101, region="ID")


@pytest.mark.parametrize("text", ["web\x00site", "\x00", "re\x1bdesign", "ab\udcff"])
def test_control_characters_and_broken_text_are_refused_with_a_reason(session, shop, text):
    with pytest.raises(ValidationError, match="not control characters"):
        search_cards(session, shop["ana"], text, region="ID")


def test_the_deal_number_and_the_phone_still_find_the_deal(session, shop):
    ana, website = shop["ana"], shop["website"]
    assert found(session, ana, f"#{website.id}") == ["Website redesign"]
    assert found(session, ana, str(website.id)) == ["Website redesign"]
    assert found(session, ana, "0812 3456 7890") == ["Website redesign"]
    assert found(session, ana, "+62 812-3456-7890") == ["Website redesign"]
    # Digits Python counts as digits but no deal number is written with.
    assert found(session, ana, "²³") == []


# --- keeping up with changes ------------------------------------------------------------------


def test_a_renamed_contact_is_found_by_the_new_name_and_not_the_old(session, shop):
    contact = session.get(Contact, shop["santoso"].id)
    contact.name = "Dewi Lestari"
    session.add(contact)
    session.flush()
    assert found(session, shop["ana"], "santoso") == []
    assert found(session, shop["ana"], "lestari") == ["Website redesign"]


def test_a_retitled_deal_is_found_by_the_new_title_and_not_the_old(session, shop):
    website = shop["website"]
    deals.update_deal(session, shop["ana"], website.id, expected_version=website.version,
                      title="Intranet portal")
    assert found(session, shop["ana"], "redesign") == []
    assert found(session, shop["ana"], "intranet") == ["Intranet portal"]


def test_a_deleted_deal_or_contact_is_no_longer_found_by_it(session, shop):
    session.exec(delete(Deal).where(Deal.id == shop["erp"].id))
    assert found(session, shop["hana"], "rollout") == []
    assert found(session, shop["hana"], "wulan") == ["Call from +62 857-9999-0000"]
    session.exec(delete(Contact).where(Contact.id == shop["sari"].id))
    session.expire_all()
    assert found(session, shop["hana"], "wulan") == []
    # The deal stays, without its contact, and is still found by its title.
    assert found(session, shop["hana"], "call from") == ["Call from +62 857-9999-0000"]


def test_closed_deals_are_found_as_before(session, shop):
    ana, website, ruko = shop["ana"], shop["website"], shop["ruko"]
    deals.close_won(session, ana, website.id, expected_version=website.version)
    deals.close_lost(session, ana, ruko.id, reason="Price too high",
                     expected_version=ruko.version)
    assert found(session, ana, "redesign") == ["Website redesign"]
    assert found(session, ana, "ñusa") == ["Ruko Jalan Ñusa Indah: pemasangan PABX"]


def test_a_new_caller_is_found_by_the_name_the_pbx_gave_the_deal(session, shop):
    calls.record_inbound_call(session, uniqueid="1700000000.1", linkedid="1700000000.1",
                              caller=classify_caller("+62 811-2222-3333", region="ID",
                                                     extensions=ExtensionPlan.parse("100-199")),
                              caller_name="Putri Kusuma", did="2150001", create_deals=True,
                              region="ID", now=at(30))
    assert found(session, shop["ana"], "kusuma") == ["Call from Putri Kusuma"]


def test_on_bulk_seeded_data_the_index_finds_exactly_what_reading_every_deal_finds(engine):
    """The seed writes its rows with plain INSERTs (COPY on PostgreSQL), past the services."""
    seed_synthetic(engine, deals=400, contacts=80, sellers=3, region="ID", random_seed=5,
                   pipeline_name="Bench")
    with transaction(engine, read_only=True) as session:
        rows = session.exec(select(Deal, Contact.name).outerjoin(
            Contact, Contact.id == Deal.contact_id)).all()
        unsorted = {stage.id for stage in stages_by_name(session, session.exec(
            select(Pipeline)).one()).values() if stage.is_unsorted}
        seller = Actor.of(session.exec(select(User).where(User.role == "seller")
                                       .order_by(User.id)).first())

        def expected(actor, text):
            text = text.lower()
            hits = [deal for deal, name in rows
                    if (text in deal.title.lower() or text in (name or "").lower())
                    and can_read_deal(actor, owner_id=deal.owner_id,
                                      in_unsorted=deal.stage_id in unsorted)]
            hits.sort(key=lambda deal: (deal.created_at, deal.id), reverse=True)
            return [deal.id for deal in hits[:SEARCH_LIMIT]]

        for text in ("budi", "Santoso", "cloud pbx", "PT Sinar", "jay", "a W", "ti k",
                     "for PT", "zzz", "Call-centre"):
            for actor in (ADMIN, seller):
                ids = [card.id for card in search_cards(session, actor, text, region="ID")]
                assert ids == expected(actor, text), (text, actor.name)


# --- who sees what, which pipeline, how many, in which order ------------------------------------


def test_a_seller_never_finds_another_sellers_deal(session, shop):
    assert found(session, shop["ana"], "rollout") == []
    assert found(session, shop["ana"], "sari wulan") == ["Call from +62 857-9999-0000"]
    assert found(session, shop["budi"], "rollout") == ["ERP rollout"]
    assert found(session, shop["hana"], "rollout") == ["ERP rollout"]


def test_the_pipeline_filter_keeps_one_pipelines_deals(session, shop):
    service = make_pipeline(session, name="Service")
    make_deal(session, shop["ana"], title="Website redesign support",
              pipeline_id=service.id, now=at(20))
    ana = shop["ana"]
    assert found(session, ana, "redesign") == ["Website redesign support", "Website redesign"]
    assert found(session, ana, "redesign", pipeline_id=service.id) == [
        "Website redesign support"]
    assert found(session, ana, "redesign", pipeline_id=shop["pipeline"].id) == [
        "Website redesign"]


def test_newest_first_and_at_most_the_limit(session, shop):
    ana = shop["ana"]
    opportunity = stages_by_name(session, shop["pipeline"])["Opportunity"]
    # Pairs created at the same minute: the higher deal number is the newer.
    made = [make_deal(session, ana, title=f"Lead {n:02d}", stage_id=opportunity.id,
                      now=at(100 + n // 2)) for n in range(SEARCH_LIMIT + 10)]
    newest_first = [deal.title for deal in sorted(made, key=lambda d: (d.created_at, d.id),
                                                  reverse=True)]
    assert found(session, ana, "lead") == newest_first[:SEARCH_LIMIT]
    assert found(session, ana, "lead", limit=5) == newest_first[:5]
    assert found(session, ana, "ad", limit=5) == newest_first[:5]


# --- the index is what answers ------------------------------------------------------------------


def search_statement(engine, session, actor, text) -> tuple[str, object]:
    """The SQL a search runs on ``engine``, with its parameters."""
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    session.flush()
    event.listen(engine, "before_cursor_execute", record)
    try:
        search_cards(session, actor, text, region="ID")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    (statement, parameters), = (seen_one for seen_one in seen if "ORDER BY" in seen_one[0])
    return statement, parameters


def test_a_search_of_three_characters_or_more_reads_the_trigram_indexes(engine, session, shop):
    statement, parameters = search_statement(engine, session, shop["hana"], "budi sant")
    connection = session.connection()
    if engine.dialect.name == "sqlite":
        plan = " / ".join(row[-1] for row in connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + statement, parameters))
        assert "VIRTUAL TABLE INDEX" in plan, plan
        assert "deal_title_fts" in plan and "contact_name_fts" in plan, plan
    else:
        # The tables are tiny here: left alone the planner rightly reads them whole, probes
        # the contacts of a few deals one by one, or walks a primary key filtering names
        # (which statistics left by earlier tests can make look cheaper). What is checked is
        # that this query can be answered from the trigram indexes, so every other way to
        # read a table is taken off it: a match by name or title is then read only through
        # its index.
        for way in ("seqscan", "indexscan", "indexonlyscan", "nestloop"):
            connection.exec_driver_sql(f"SET LOCAL enable_{way} = off")
        plan = "\n".join(row[0] for row in connection.exec_driver_sql(
            "EXPLAIN " + statement, parameters))
        assert "ix_deals_title_trgm" in plan, plan
        assert "ix_contacts_name_trgm" in plan, plan


def test_one_or_two_characters_are_matched_by_a_scan(engine, session, shop):
    statement, _ = search_statement(engine, session, shop["hana"], "bu")
    assert "LIKE" in statement and "_fts" not in statement


# --- a PostgreSQL role that may not create pg_trgm -----------------------------------------------


@pytest.fixture
def database_of_a_plain_role():
    """A new database where the connecting role may not create extensions."""
    with new_postgres_database("pbx_crm_test_plain", no_extensions=True) as engine:
        yield engine


@pytest.mark.postgres
def test_without_pg_trgm_the_upgrade_goes_on_and_search_reads_every_deal(
        database_of_a_plain_role, caplog):
    engine = database_of_a_plain_role
    with caplog.at_level(logging.WARNING):
        upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert "pg_trgm could not be created" in caplog.text
    with transaction(engine) as session:
        indexes = session.connection().execute(sql(
            "SELECT indexname FROM pg_indexes WHERE indexname LIKE '%trgm%'")).scalars().all()
        assert indexes == []
        make_pipeline(session)
        ana = make_user(session, "ana")
        santoso = make_contact(session, "Budi Santoso")
        make_deal(session, ana, title="Website redesign", contact_id=santoso.id, now=at(0))
        assert found(session, ana, "SANTOSO") == ["Website redesign"]
        assert found(session, ana, "redesign") == ["Website redesign"]
