"""Several nodes on one PostgreSQL act as one CRM, and lose one node of each kind mid-run
without losing or doubling a call or a pop, or running a robot twice.

Two FastAGI servers, two web servers and two robot schedulers, each a ``pbx-crm`` process
started as an admin starts it, on a loopback address of its own (node A on 127.0.0.2, node
B on 127.0.0.3) with a data directory and spool of its own (``nodes``). The PBX reaches the
FastAGI servers as Asterisk does through ``hagi://`` and SRV records: every AGI tries them in
turn, the next when one refuses (``pbx_crm.simulator.hagi``).

The team: ana (101), budi (102) and citra (103) sell, hana heads them. Each of 24 customers
has a deal with ana or budi in Opportunity, where a robot notifies the owner when a call to
the deal is answered; six callers are new to the CRM. Each calls once.

1. Every node up: the calls alternate between the FastAGI nodes; ana's browser, on web node
   B, gets the pops of her calls answered through FastAGI node A; hana's board shows the
   same deals on either web node; the robot fires once per deal, both schedulers running.
2. While calls go on, FastAGI node A loses its link to PostgreSQL (it answers and spools),
   then kill -9 of FastAGI node A, web node B and scheduler A: the calls go on through
   FastAGI node B, ana's browser comes back through web node A from its ``Last-Event-ID``,
   the surviving scheduler goes on.
3. FastAGI node A starts again on its data directory and replays what it had spooled.
   Every call is in the CRM once, ana got every pop once and in order, the robot ran once
   per deal whose answer was recorded.

In step 2 one call's hooks are shared by the two nodes: each keeps a call's requests in
order, the two together do not. An answer that reaches node B before the lookup node A
spooled is recorded waits in B's spool until the call is there (or until B's hangup has
recorded it): no answer is lost.
"""

from __future__ import annotations

import html
import re
import socket
import threading
import time
from collections import Counter
from urllib.parse import quote

import pytest
from factories import PASSWORD, make_contact, make_deal, make_pipeline, make_user, stages_by_name
from nodes import FailoverStream, Node, free_port, stop_all, wait_until
from postgres_databases import new_postgres_database
from sqlalchemy import text
from telephony import TcpProxy
from webtools import Client

from pbx_crm.db import transaction, upgrade
from pbx_crm.robots import rules as robot_rules
from pbx_crm.simulator.agi import FakeChannel
from pbx_crm.simulator.hagi import Hagi
from pbx_crm.simulator.pbx import OWNER, CallPlayer, SimulatedCall, play_at_rate
from pbx_crm.telephony.health import ask_health

A, B = "127.0.0.2", "127.0.0.3"
KNOWN, NEW = 24, 6
FIRST = 10  # calls played while every node runs
RATE = 5.0  # calls started per second
CUT_AFTER = 3  # calls of the second part ended when FastAGI node A loses its database
SPOOLED_BEFORE_KILL = 3  # requests FastAGI node A holds in its spool when it dies
DEADLINE = 30.0  # seconds any one condition may take on a loaded machine


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.skip(
    reason="an SQLite database is one machine's file: nodes share a database only on "
           "PostgreSQL")), pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request):
    with new_postgres_database("pbx_crm_nodes") as engine:
        upgrade(engine)
        yield engine


def set_up_the_team(engine) -> dict:
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        opportunity = stages_by_name(session, pipeline)["Opportunity"]
        hana = make_user(session, "hana", role="head")
        sellers = [make_user(session, login, extensions=[exten])
                   for login, exten in (("ana", "101"), ("budi", "102"), ("citra", "103"))]
        deals = {}
        for n in range(1, KNOWN + 1):
            contact = make_contact(session, name=f"Customer {n}", phones=(known_number(n),))
            deal = make_deal(session, sellers[n % 2], title=f"Deal {n}",
                             contact_id=contact.id, stage_id=opportunity.id)
            deals[known_number(n)] = deal.id
        robot_rules.create_rule(session, hana, stage_id=opportunity.id, name="Answered",
                                condition="call_answered", condition_params={},
                                action="notify_owner", action_params={})
    return {"ana": sellers[0], "hana": hana, "deals": deals}


def known_number(n: int) -> str:
    return f"+62812{50000000 + n}"


def the_calls() -> list[SimulatedCall]:
    """Each customer calls once and their seller answers; a new caller every fifth call,
    answered by whoever of the ring group picks up."""
    known = iter(range(1, KNOWN + 1))
    new = iter(range(1, NEW + 1))
    calls = []
    for index in range(KNOWN + NEW):
        if index % 5 == 4:
            number, name = f"+62813{60000000 + next(new)}", "New caller"
        else:
            n = next(known)
            number, name = known_number(n), f"Customer {n}"
        calls.append(SimulatedCall(caller=number, caller_name=name, answer=OWNER,
                                   ring_seconds=3, talk_seconds=8))
    return calls


# --- the nodes ----------------------------------------------------------------------------


def fastagi_node(host, port, data_dir, database_url) -> Node:
    return Node(f"fastagi-{host}", ["fastagi", "--listen", f"{host}:{port}"], data_dir,
                {"PBX_CRM_DATABASE_URL": database_url})


def fastagi_ready(address) -> bool:
    return ask_health(address, 2.0).database_up


def spooled(address) -> int:
    health = ask_health(address, 5.0)
    return int(health.variables.get("CRM_SPOOLED", -1)) if health.answered else -1


def web_node(host, port, data_dir, database_url) -> Node:
    return Node(f"web-{host}", ["web", "--listen", f"{host}:{port}", "--workers", "1"],
                data_dir, {"PBX_CRM_DATABASE_URL": database_url})


def web_ready(base) -> bool:
    return Client(base).get("/login").status == 200


def sign_in(base, login) -> Client:
    """A browser of the web node at ``base``, signed in as ``login``."""
    client = Client(base)
    assert client.sign_in(login, PASSWORD).status == 303
    return client


def robots_node(name, data_dir, database_url) -> Node:
    return Node(name, ["robots"], data_dir, {"PBX_CRM_DATABASE_URL": database_url,
                                             "PBX_CRM_ROBOT_TRIGGER_SECONDS": "1",
                                             "PBX_CRM_ROBOT_PASS_SECONDS": "5"})


# --- what the database says -----------------------------------------------------------------


def rows(engine, sql: str, **params) -> list:
    with engine.connect() as connection:
        return connection.execute(text(sql), params).all()


def pops_for(engine, user_id: int, after: int) -> list[int]:
    return [row.id for row in rows(engine, "SELECT id FROM events WHERE target_user_id = :u "
                                   "AND id > :after ORDER BY id", u=user_id, after=after)]


def runs_by_deal(engine) -> Counter:
    """How many times the robot ran on each deal (and did what it says: ``done``)."""
    return Counter((row.deal_id, row.status) for row in rows(
        engine, "SELECT deal_id, status FROM robot_runs"))


def answered_known_deals(engine, deals: dict) -> set[int]:
    """The customers' deals whose call the answered hook recorded (the robot's trigger)."""
    return {row.deal_id for row in rows(
        engine, "SELECT deal_id FROM calls WHERE answered_by_id IS NOT NULL")} & set(
        deals.values())


def robot_firing(engine, deals: dict):
    """A condition: the robot ran for every customer's deal whose call was answered, and no
    other; ``.state()`` says the difference."""

    def fired() -> bool:
        return {deal for deal, _ in runs_by_deal(engine)} == answered_known_deals(engine, deals)

    def state() -> str:
        runs = {deal for deal, _ in runs_by_deal(engine)}
        answered = answered_known_deals(engine, deals)
        return (f"runs for {len(runs)} deals; answered, no run: {sorted(answered - runs)}; "
                f"run, not answered: {sorted(runs - answered)}; cursor "
                f"{rows(engine, 'SELECT position FROM robot_cursors')}, last event "
                f"{rows(engine, 'SELECT max(id) FROM events')}")

    fired.state = state
    return fired


def board_deals(client) -> set[int]:
    """The deals a board shows, every column scrolled to its end ("Show more")."""
    page = client.get("/board").text
    shown = {int(n) for n in re.findall(r'data-deal-id="(\d+)"', page)}
    for stage, after in re.findall(r'data-stage-id="(\d+)" data-after="([^"]+)"', page):
        while after:
            cards = client.get(f"/board/column/{stage}?after={quote(html.unescape(after))}").text
            shown |= {int(n) for n in re.findall(r'data-deal-id="(\d+)"', cards)}
            after = next(iter(re.findall(r'data-more="([^"]+)"', cards)), "")
    return shown


def all_deals(engine) -> set[int]:
    return {row.id for row in rows(engine, "SELECT id FROM deals")}


# --- the run --------------------------------------------------------------------------------


def test_two_nodes_of_each_kind_act_as_one_crm_and_survive_losing_one(database, tmp_path):
    started = time.monotonic()
    engine = database
    url = engine.url.render_as_string(False)
    crm = set_up_the_team(engine)
    agi_port, web_port = free_port(A, B), free_port(A, B)
    # FastAGI node A reaches PostgreSQL through a link the test can cut.
    link = TcpProxy((engine.url.host, engine.url.port or 5432))
    nodes = {
        "fastagi A": fastagi_node(A, agi_port, tmp_path / "a", link.engine_url(engine.url)),
        "fastagi B": fastagi_node(B, agi_port, tmp_path / "b", url),
        "web A": web_node(A, web_port, tmp_path / "a", url),
        "web B": web_node(B, web_port, tmp_path / "b", url),
        "robots A": robots_node("robots-a", tmp_path / "a", url),
        "robots B": robots_node("robots-b", tmp_path / "b", url),
    }
    web = {A: f"http://{A}:{web_port}", B: f"http://{B}:{web_port}"}
    stream = None
    try:
        for node in nodes.values():
            node.start()
        for letter, host in (("A", A), ("B", B)):
            nodes[f"fastagi {letter}"].wait_ready(lambda host=host: fastagi_ready((host,
                                                                                 agi_port)))
            nodes[f"web {letter}"].wait_ready(lambda host=host: web_ready(web[host]))
        for name in ("robots A", "robots B"):
            nodes[name].wait_ready(lambda node=nodes[name]: "robots: a pass every" in node.log())
        # The trigger reader starts at the end of the outbox: calls before it trigger nothing.
        wait_until(lambda: rows(engine, "SELECT 1 FROM robot_cursors"), timeout=DEADLINE,
                   what="the robots' event cursor")
        ready = time.monotonic()

        # Ana's browser on web node B, from where her page left the stream; hana's on both.
        ana = sign_in(web[B], "ana")
        position = int(re.search(r'data-position="(\d+)"', ana.get("/board").text).group(1))
        cookie = "; ".join(f"{c.name}={c.value}" for c in ana.cookies)
        stream = FailoverStream([web[B], web[A]], cookie, last_event_id=position).start()
        wait_until(lambda: stream.connections, timeout=DEADLINE, what="ana's stream opening")
        hana = {host: sign_in(web[host], "hana") for host in (A, B)}

        hagi = Hagi([(A, agi_port), (B, agi_port)])
        player = CallPlayer(hagi, time_scale=0.1)
        calls = the_calls()

        def all_of_anas_pops():
            """Her pops in the database, once her stream has them all (in order, once)."""
            ids = pops_for(engine, crm["ana"].user_id, position)
            return ids if stream.ids() == ids else None

        # 1. Every node up.
        first = play_at_rate(player, calls[:FIRST], RATE)
        assert [p.errors for p in first] == [[]] * FIRST
        served = {(s.script, s.linkedid): s.served_by for s in hagi.sessions}
        assert Counter(s.served_by for s in hagi.sessions) == {(A, agi_port): FIRST * 3 // 2,
                                                              (B, agi_port): FIRST * 3 // 2}
        assert wait_until(all_of_anas_pops, timeout=DEADLINE, what="ana's pops on B",
                          state=lambda: f"she got {stream.ids()}")
        through_a = [m for m in stream.received if m["base"] == web[B] and served.get(
            ("answered" if m["event"] == "answered" else "incoming", m["data"]["linkedid"]))
            == (A, agi_port) and m["event"] in ("ringing", "answered")]
        assert through_a, "no pop of a call answered through FastAGI node A reached web node B"
        assert board_deals(hana[A]) == board_deals(hana[B]) == all_deals(engine)
        robot_fired = robot_firing(engine, crm["deals"])
        wait_until(robot_fired, timeout=DEADLINE, what="the robot firing for the answered calls",
                   state=robot_fired.state)
        assert {status for _, status in runs_by_deal(engine)} == {"done"}
        assert set(runs_by_deal(engine).values()) == {1}

        # 2. While calls go on, FastAGI node A loses its database (it answers, and spools
        # what it is asked), then one node of each kind dies.
        ended = threading.Semaphore(0)
        second: list = []
        playing = threading.Thread(target=lambda: second.extend(play_at_rate(
            player, calls[FIRST:], RATE, on_played=lambda index, played: ended.release())))
        playing.start()
        for _ in range(CUT_AFTER):
            assert ended.acquire(timeout=DEADLINE), "the calls stopped"
        link.cut()
        wait_until(lambda: spooled((A, agi_port)) >= SPOOLED_BEFORE_KILL, timeout=DEADLINE,
                   what="FastAGI node A spooling calls")
        held = spooled((A, agi_port))
        kill = time.monotonic()
        for name in ("fastagi A", "web B", "robots A"):
            nodes[name].kill()
        playing.join(DEADLINE * 2)
        assert not playing.is_alive(), "the calls did not end"
        served = {(s.script, s.linkedid): s.served_by for s in hagi.sessions}
        after_kill = [s for s in hagi.sessions if s.at > kill]
        assert {s.served_by for s in after_kill} == {(B, agi_port)}
        failed_over = [s for s in after_kill if s.refused_by]
        assert failed_over and all(s.refused_by == ((A, agi_port),) for s in failed_over)
        back = wait_until(lambda: [c for c in stream.connections if c.at > kill],
                          timeout=DEADLINE, what="ana's browser reconnecting")[0]
        assert back.base == web[A] and back.last_event_id is not None

        # 3. FastAGI node A back on its data directory, its database link too: its spool
        # replays.
        link.restore()
        first_life = len(nodes["fastagi A"].log())
        nodes["fastagi A"] = fastagi_node(A, agi_port, tmp_path / "a",
                                          link.engine_url(engine.url)).start()
        nodes["fastagi A"].wait_ready(lambda: fastagi_ready((A, agi_port)))
        wait_until(lambda: spooled((A, agi_port)) == 0 and spooled((B, agi_port)) == 0,
                   timeout=DEADLINE, what="the spools emptying")
        replayed = sum(int(n) for n in re.findall(r"replayed (\d+) spooled request",
                                                  nodes["fastagi A"].log()[first_life:]))
        assert replayed >= held

        # Every call in the CRM once.
        played = first + second
        assert len(played) == KNOWN + NEW
        recorded = Counter(row.uniqueid for row in rows(engine, "SELECT uniqueid FROM calls"))
        assert recorded == Counter(p.linkedid for p in played)
        # Every call is over in the CRM, but one whose session the kill cut short: neither
        # Asterisk nor the CRM heard the end of that session, and Asterisk tries no other
        # server for a session that started.
        broken = {s.linkedid for s in hagi.sessions
                  if s.served_by == (A, agi_port) and s.at < kill < s.ended}
        still_open = {row.uniqueid for row in rows(
            engine, "SELECT uniqueid FROM calls WHERE ended_at IS NULL")}
        assert still_open <= broken

        # Who answered, as the phones did, also for a call whose lookup waited in one node's
        # spool while the other node took its answer.
        recorded_answers = dict(rows(engine, "SELECT uniqueid, answered_exten FROM calls"))
        lost_answers = {p.linkedid for p in played
                        if recorded_answers[p.linkedid] != p.answered_by}
        assert not lost_answers
        # Ana's pops: every one, once, in order, across the two web nodes.
        expected = wait_until(all_of_anas_pops, timeout=DEADLINE, what="ana's pops",
                              state=lambda: f"she got {stream.ids()}")
        assert len(set(expected)) == len(expected)

        # The robot: once per answered customer's deal, the surviving scheduler going on.
        wait_until(robot_fired, timeout=DEADLINE, what="the robot firing for every answered call",
                   state=robot_fired.state)
        answered = answered_known_deals(engine, crm["deals"])
        assert {status for _, status in runs_by_deal(engine)} == {"done"}
        assert set(runs_by_deal(engine).values()) == {1}
        assert board_deals(hana[A]) == all_deals(engine)

        per_node = Counter((s.served_by[0], s.at > kill) for s in hagi.sessions)
        print(f"\n{len(played)} calls, {len(hagi.sessions)} AGI sessions: before the kill "
              f"A {per_node[A, False]}, B {per_node[B, False]}; after it B {per_node[B, True]} "
              f"({len(failed_over)} refused by A first, at most "
              f"{max(s.seconds for s in failed_over) * 1000:.1f} ms lost); ana's stream back "
              f"on A {back.at - kill:.2f} s after the kill; {len(expected)} pops to ana, "
              f"{sum(m['base'] == web[A] for m in stream.received)} through A; "
              f"{len(answered)} robot runs; {held} requests in A's spool at the kill, "
              f"{replayed} replayed by its restart, "
              f"{len(lost_answers)} answers lost; "
              f"broken sessions {len(broken)}; "
              f"start {ready - started:.1f} s, run {time.monotonic() - started:.1f} s")
    finally:
        if stream is not None:
            stream.close()
        stop_all(nodes.values(), grace=2.0)
        link.close()


# --- hagi:// as the emulator plays it -------------------------------------------------------


def test_hagi_takes_the_servers_in_turn_and_the_next_when_one_refuses():
    """What the run above relies on, without processes: each AGI starts one server further
    along, a refused connection goes on to the next, and none answering fails the AGI."""
    with socket.create_server((A, 0)) as listening:
        up = (A, listening.getsockname()[1])
        down = (B, free_port(B))  # nobody listens there: refused

        def answer_and_hang_up():  # a FastAGI script that reads its request and is done
            while True:
                try:
                    connection, _ = listening.accept()
                except OSError:
                    return
                with connection:
                    while b"\n\n" not in connection.recv(65536):
                        pass

        threading.Thread(target=answer_and_hang_up, daemon=True).start()
        hagi = Hagi([up, down])
        statuses = [hagi.run("incoming", ["2150001"], FakeChannel(uniqueid=f"1.{n}")).agistatus
                    for n in range(4)]
        assert statuses == ["SUCCESS"] * 4
        assert [(s.served_by, s.refused_by) for s in hagi.sessions] == [
            (up, ()), (up, (down,)), (up, ()), (up, (down,))]
        listening.shutdown(socket.SHUT_RDWR)  # stops listening, and the accepting thread
        assert Hagi([up, down]).run("incoming", [], FakeChannel()).agistatus == "FAILURE"
