"""One call's hooks on two FastAGI nodes, as ``hagi://`` shares them, while one node has lost
its link to PostgreSQL.

Node A answers the lookup and can only spool it; node B takes the answer and the hangup. Each
node keeps one call's requests in order in its own spool, but not across nodes: B's answer
finds no call yet. It waits in B's spool (the hangup behind it records the call from the
caller's number, as it does when no lookup reached the CRM), is replayed once the call is
there, and says who answered; A's lookup, replayed when its link is back, finds the call
recorded. One call, one deal, the seller who answered owns it.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from factories import make_pipeline, make_user
from pbx_crm.db import make_engine, transaction
from pbx_crm.models import Call, Deal, Stage
from telephony import Pbx, TcpProxy

NEW_CALLER = "+6281377009911"


@pytest.fixture
def postgres(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("nodes share a database only on PostgreSQL: SQLite is one machine's file")
    return engine


@pytest.fixture
def ana(postgres):
    with transaction(postgres) as session:
        make_pipeline(session)
        return make_user(session, "ana", extensions=["101"])


@pytest.fixture
def nodes(postgres, tmp_path):
    """Node A behind a proxy (its link to the database can be cut), node B direct."""
    url = postgres.url
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    engine_a = make_engine(proxy.engine_url(url))
    node_a, node_b = Pbx(engine_a, tmp_path / "a"), Pbx(postgres, tmp_path / "b")
    yield proxy, node_a, node_b
    node_a.stop()
    node_b.stop()
    engine_a.dispose()
    proxy.close()


def test_an_answer_taken_by_the_other_node_before_the_call_is_recorded_still_counts(
        postgres, ana, nodes):
    proxy, node_a, node_b = nodes
    proxy.cut()
    call = node_a.trunk_call(NEW_CALLER, None)

    node_a.incoming(call)  # A cannot reach the database: spooled
    assert call.variables["CRM_STATUS"] == "UNAVAILABLE"
    node_b.answered(call, "101")  # B: no such call yet
    node_b.hangup(call, "ANSWER", talk=42)
    assert node_b.spool.counts() == (2, 0)  # the answer waits, the hangup behind it

    node_b.dispatcher.replay_spooled()  # the hangup records the call; the answer waits on
    node_b.dispatcher.replay_spooled()  # the answer finds it: ana answered
    assert node_b.spool.counts() == (0, 0)

    proxy.restore()
    assert node_a.dispatcher.database.check()
    node_a.dispatcher.replay_spooled()  # A's lookup: the call is there already
    assert node_a.spool.counts() == (0, 0)

    with transaction(postgres, read_only=True) as session:
        (recorded,) = session.exec(select(Call).where(Call.uniqueid == call.uniqueid)).all()
        assert (recorded.disposition, recorded.answered_by_id, recorded.answered_exten) == (
            "answered", ana.user_id, "101")
        deals = session.exec(select(Deal).where(Deal.contact_id == recorded.contact_id)).all()
        assert [deal.id for deal in deals] == [recorded.deal_id]
        assert deals[0].owner_id == ana.user_id
        assert not session.get(Stage, deals[0].stage_id).is_unsorted
