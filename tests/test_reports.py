"""Funnel reports: every figure checked against a small funnel worked out by hand.

The funnel below is built through the deal services with a controlled clock. Hours are
counted from ``at(0)``, Monday 6 May 2024 09:00 UTC (16:00 in Jakarta, the company's zone).
The period is 6 May to 20 May 2024, Jakarta dates: from hour -16 to hour 320; the second
week starts at hour 152 (Monday 00:00 in Jakarta, still Sunday in UTC).

    deal  seller  amount  its life (hour: stage)
    A1    ana     100     0 Opportunity, 24 Proposal, 160 Won
    A2    ana     200     0 Opportunity, 48 Proposal, 96 Lost
    A3    ana     300     2 Opportunity, 400 Proposal (after the period)
    A4    ana      50     0 Opportunity, 12 Lost
    A5    ana      20     0 Opportunity, 20 Lost
    A6    ana      30     0 Opportunity, 30 Lost
    P1    ana      10     -72 Opportunity (before the period), 1 Proposal
    U1    ana       0     1 Unsorted (a call), taken by ana at 3: Opportunity
    U2    nobody   70     5 Unsorted (a call), still there
    B1    budi   1000     0 Opportunity, 24 Proposal, 155 Lost (Monday 03:00 in Jakarta)
    B2    budi    500     0 Opportunity, 36 Proposal, 60 Document coordination
    B3    budi    400     0 Opportunity, 6 Proposal, 10 back to Opportunity
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from factories import at, make_pipeline, make_unsorted_deal, make_user, stages_by_name
from pbx_crm.funnel import call_backs, deals, tasks
from pbx_crm.reporting import days as report_days, days_rebuild, reports
from pbx_crm.people import users
from pbx_crm.errors import Forbidden, NotFound, ValidationError
from pbx_crm.models import Call, RobotRule, RobotRun
from pbx_crm.reporting.reports import DealFilter

JAKARTA = "Asia/Jakarta"
START, END = date(2024, 5, 6), date(2024, 5, 20)
HOUR = 3600
PROPOSAL = "Commercial proposal"
DOCUMENTS = "Document coordination"


def h(hours: float):
    return at(int(hours * 60))


class Funnel:
    """The data set above, with handles on its people, stages and deals."""

    def __init__(self, session):
        self.session = session
        self.pipeline = make_pipeline(session)
        self.stage = stages_by_name(session, self.pipeline)
        self.hana = make_user(session, "hana", role="head")
        self.ana = make_user(session, "ana")
        self.budi = make_user(session, "budi")
        for login, team in (("ana", "north"), ("budi", "south")):
            users.get_user_by_login(session, login).team = team
        self.deal = {}

    def create(self, name, seller, amount, hour):
        self.deal[name] = deals.create_deal(self.session, seller, title=name,
                                            amount_minor=amount, now=h(hour))
        return self.deal[name]

    def move(self, name, seller, stage, hour):
        deals.move_deal(self.session, seller, self.deal[name].id,
                        to_stage_id=self.stage[stage].id, expected_version=None, now=h(hour))

    def lose(self, name, seller, hour):
        deals.close_lost(self.session, seller, self.deal[name].id, reason="Price too high",
                         expected_version=None, now=h(hour))

    def call(self, name, hour, direction, disposition, key):
        self.session.add(Call(uniqueid=key, linkedid=key, direction=direction,
                              disposition=disposition, ringing_at=h(hour),
                              deal_id=self.deal[name].id))

    def nudge(self, rule, name, hour, answer, status="done"):
        self.session.add(RobotRun(rule_id=rule.id, deal_id=self.deal[name].id,
                                  run_key=f"{rule.id}:{name}:{hour}", status=status,
                                  fired_at=h(hour), answer=answer))


@pytest.fixture
def funnel(session) -> Funnel:
    return build_funnel(session)


def build_funnel(session) -> Funnel:
    f = Funnel(session)
    ana, budi = f.ana, f.budi
    for name, seller, amount, hour in (
            ("A1", ana, 100, 0), ("A2", ana, 200, 0), ("A3", ana, 300, 2), ("A4", ana, 50, 0),
            ("A5", ana, 20, 0), ("A6", ana, 30, 0), ("P1", ana, 10, -72),
            ("B1", budi, 1000, 0), ("B2", budi, 500, 0), ("B3", budi, 400, 0)):
        f.create(name, seller, amount, hour)
    f.deal["U1"] = make_unsorted_deal(session, amount_minor=0, now=h(1))
    f.deal["U2"] = make_unsorted_deal(session, amount_minor=70, now=h(5))
    deals.take_deal(session, ana, f.deal["U1"].id, now=h(3))
    for name, seller, stage, hour in (
            ("P1", ana, PROPOSAL, 1), ("B3", budi, PROPOSAL, 6),
            ("B3", budi, "Opportunity", 10), ("A1", ana, PROPOSAL, 24),
            ("B1", budi, PROPOSAL, 24), ("B2", budi, PROPOSAL, 36),
            ("A2", ana, PROPOSAL, 48), ("B2", budi, DOCUMENTS, 60),
            ("A1", ana, "Won", 160), ("A3", ana, PROPOSAL, 400)):
        f.move(name, seller, stage, hour)
    for name, seller, hour in (("A4", ana, 12), ("A5", ana, 20), ("A6", ana, 30),
                               ("A2", ana, 96), ("B1", budi, 155)):
        f.lose(name, seller, hour)

    # Calls: U2's first call rang a minute before the PBX made its deal.
    for key, (name, hour, direction, disposition) in enumerate((
            ("U2", 5 - 1 / 60, "inbound", "missed"),
            ("A3", 10, "inbound", "abandoned"), ("A3", 14, "outbound", "answered"),
            ("A1", 30, "outbound", "answered"), ("A1", 100, "inbound", "missed"),
            ("A1", 102, "outbound", "busy"),
            ("B2", 40, "inbound", "missed"), ("B2", 43, "inbound", "answered"),
            ("B2", 70, "inbound", "missed"),
            ("P1", -20, "outbound", "answered"))):  # before the period
        f.call(name, hour, direction, disposition, f"call-{key}")
    session.flush()
    # Written directly, not by the call writer: their call backs and daily counts as it keeps.
    call_backs.fill_call_backs(session)
    days_rebuild.rebuild_call_days(session, time_zone=report_days.day_zone(session))

    rules = {}
    for stage in ("Opportunity", PROPOSAL):
        rules[stage] = RobotRule(stage_id=f.stage[stage].id, name=f"Stuck in {stage}",
                                 condition="time_in_stage", action="notify_owner")
        session.add(rules[stage])
    rules["task"] = RobotRule(stage_id=f.stage[PROPOSAL].id, name="Call them",
                              condition="time_in_stage", action="create_task")
    session.add(rules["task"])
    session.flush()
    f.nudge(rules[PROPOSAL], "A1", 30, "moved_on")
    f.nudge(rules[PROPOSAL], "B2", 50, "snooze")
    f.nudge(rules[PROPOSAL], "B1", 100, None)
    f.nudge(rules["Opportunity"], "B3", 200, "lower_priority")
    f.nudge(rules["Opportunity"], "A3", 100, None, status="failed")  # never reached anyone
    f.nudge(rules[PROPOSAL], "P1", -30, "moved_on")  # before the period
    f.nudge(rules["task"], "B1", 101, None)  # a task, not a question to the seller
    session.flush()
    return f


def report(funnel, actor=None, **kw):
    return reports.funnel_report(funnel.session, actor or funnel.hana,
                                 pipeline_id=funnel.pipeline.id, start=START, end=END,
                                 time_zone=JAKARTA, **kw)


def by_name(rows):
    return {row.name: row for row in rows}


# --- stage by stage -------------------------------------------------------------------------


def test_stage_figures_for_the_head(funnel):
    stages = by_name(report(funnel).stages)
    assert list(stages) == ["Unsorted", "Opportunity", PROPOSAL, DOCUMENTS,
                            "Signature and payment", "Implementation", "Closing"]

    def figures(name):
        s = stages[name]
        return (s.open_deals, s.open_amount_minor, s.entered, s.moved_on, s.moved_back, s.lost)

    assert figures("Unsorted") == (1, 70, 2, 1, 0, 0)
    assert figures("Opportunity") == (2, 400, 11, 6, 0, 3)
    assert figures(PROPOSAL) == (2, 310, 6, 2, 1, 2)
    assert figures(DOCUMENTS) == (1, 500, 1, 0, 0, 0)
    assert figures("Closing") == (0, 0, 0, 0, 0, 0)

    assert stages["Unsorted"].conversion == 1.0
    assert stages["Opportunity"].conversion == pytest.approx(6 / 9)
    assert stages["Opportunity"].loss_rate == pytest.approx(3 / 9)
    assert stages[PROPOSAL].conversion == 0.5
    assert stages[DOCUMENTS].conversion is None

    # Time in stage, over the moves out in the period (P1 entered Opportunity at hour -72).
    assert stages["Unsorted"].avg_seconds == stages["Unsorted"].median_seconds == 2 * HOUR
    assert stages["Opportunity"].avg_seconds == pytest.approx(273 / 9 * HOUR)
    assert stages["Opportunity"].median_seconds == 24 * HOUR  # 6 12 20 24 [24] 30 36 48 73
    assert stages[PROPOSAL].avg_seconds == pytest.approx(343 / 5 * HOUR)
    assert stages[PROPOSAL].median_seconds == 48 * HOUR  # 4 24 [48] 131 136
    assert stages[DOCUMENTS].avg_seconds is None and stages[DOCUMENTS].median_seconds is None


def test_outcomes_win_rate_and_cycle(funnel):
    outcomes = report(funnel).outcomes
    assert (outcomes.created, outcomes.won, outcomes.lost) == (11, 1, 5)
    assert outcomes.won_amount_minor == 100
    assert outcomes.win_rate == pytest.approx(1 / 6)
    assert outcomes.cycle_avg_seconds == outcomes.cycle_median_seconds == 160 * HOUR


def test_a_seller_sees_their_own_figures_only(funnel):
    mine = report(funnel, funnel.ana)
    assert (mine.seller_id, mine.seller_name) == (funnel.ana.user_id, "Ana")
    stages = by_name(mine.stages)
    # U2 is nobody's: not in Ana's Unsorted; U1 (taken by Ana) counts for her.
    assert (stages["Unsorted"].open_deals, stages["Unsorted"].entered) == (0, 1)
    opportunity = stages["Opportunity"]
    assert (opportunity.open_deals, opportunity.open_amount_minor, opportunity.entered,
            opportunity.moved_on, opportunity.lost) == (1, 0, 7, 3, 3)
    assert opportunity.median_seconds == 27 * HOUR  # 12 20 [24 30] 48 73: an even count
    assert opportunity.avg_seconds == pytest.approx(207 / 6 * HOUR)
    assert (stages[PROPOSAL].open_deals, stages[PROPOSAL].entered) == (2, 3)
    assert (mine.outcomes.created, mine.outcomes.won, mine.outcomes.lost) == (7, 1, 4)
    assert [row.name for row in mine.losses.rows] == ["Ana"]
    assert {c.seller_name for c in mine.callbacks} == {"Ana"}
    assert {n.seller_name for n in mine.nudges} == {"Ana"}

    # Asking for Budi's figures is refused, not quietly answered with her own.
    with pytest.raises(Forbidden):
        report(funnel, funnel.ana, seller_id=funnel.budi.user_id)
    assert report(funnel, funnel.ana, seller_id=funnel.ana.user_id).stages == mine.stages


def test_a_head_may_look_at_one_seller(funnel):
    budi = report(funnel, seller_login="budi")
    assert budi.seller_name == "Budi"
    stages = by_name(budi.stages)
    assert (stages["Opportunity"].open_deals, stages["Opportunity"].entered,
            stages["Opportunity"].moved_on, stages["Opportunity"].lost) == (1, 4, 3, 0)
    assert (stages[PROPOSAL].moved_on, stages[PROPOSAL].moved_back,
            stages[PROPOSAL].lost) == (1, 1, 1)
    assert (budi.outcomes.won, budi.outcomes.lost, budi.outcomes.win_rate) == (0, 1, 0.0)
    assert budi.outcomes.cycle_median_seconds is None
    with pytest.raises(NotFound):
        report(funnel, seller_login="nobody")


# --- the loss map -----------------------------------------------------------------------------


def test_loss_map_by_seller_flags_the_weak_cell(funnel):
    losses = report(funnel).losses
    stage = funnel.stage
    assert losses.by == "seller"
    assert [name for _, name in losses.stages][:3] == ["Unsorted", "Opportunity", PROPOSAL]
    rows = {row.name: row for row in losses.rows}
    assert list(rows) == ["Ana", "Budi"]

    def cell(who, name):
        c = rows[who].cell(stage[name].id)
        return c.moved_on, c.lost, c.weak

    assert cell("Ana", "Unsorted") == (1, 0, False)
    # Ana loses half at Opportunity, the team a third: 17 points above, over 6 deals.
    assert cell("Ana", "Opportunity") == (3, 3, True)
    assert rows["Ana"].cell(stage["Opportunity"].id).loss_rate == 0.5
    assert cell("Budi", "Opportunity") == (3, 0, False)
    # Both lose half at the proposal, but over too few deals to call it weak anyway.
    assert cell("Ana", PROPOSAL) == (1, 1, False)
    assert cell("Budi", PROPOSAL) == (1, 1, False)
    assert losses.overall_cell(stage["Opportunity"].id).loss_rate == pytest.approx(1 / 3)


def test_loss_map_by_team_when_users_have_teams(funnel):
    teams = report(funnel).losses_by_team
    assert teams.by == "team"
    rows = {row.name: row for row in teams.rows}
    assert list(rows) == ["north", "south"]
    opportunity = funnel.stage["Opportunity"].id
    assert (rows["north"].cell(opportunity).lost, rows["north"].cell(opportunity).weak) == (
        3, True)
    assert rows["south"].cell(opportunity).moved_on == 3


def test_no_team_map_without_teams(session):
    pipeline = make_pipeline(session)
    ana = make_user(session, "ana")
    deal = deals.create_deal(session, ana, title="Shop", now=h(0))
    deals.close_lost(session, ana, deal.id, reason="No budget", expected_version=None,
                     now=h(1))
    found = reports.funnel_report(session, ana, pipeline_id=pipeline.id, start=START,
                                  end=END, time_zone=JAKARTA)
    assert found.losses_by_team is None
    assert found.losses.rows[0].cell(stages_by_name(session, pipeline)["Opportunity"].id
                                     ).lost == 1


# --- calls and nudges ---------------------------------------------------------------------------


def test_calls_per_deal_by_stage(funnel):
    calls = by_name(report(funnel).calls)

    def figures(name):
        c = calls[name]
        return c.deals, c.calls, c.outbound, c.missed

    assert figures("Unsorted") == (2, 1, 0, 1)  # U2's first call, before its deal existed
    assert figures("Opportunity") == (11, 2, 1, 1)
    assert figures(PROPOSAL) == (6, 5, 2, 2)  # A3 entered it after the period: not counted
    assert figures(DOCUMENTS) == (1, 1, 0, 1)
    assert calls[PROPOSAL].calls_per_deal == pytest.approx(5 / 6)
    assert calls["Closing"].calls_per_deal is None

    mine = by_name(report(funnel, funnel.ana).calls)
    assert (mine["Unsorted"].deals, mine["Unsorted"].calls) == (1, 0)
    assert (mine[PROPOSAL].deals, mine[PROPOSAL].calls) == (3, 3)


def test_a_deal_back_in_a_stage_is_one_deal_in_it(session):
    funnel = Funnel(session)
    funnel.create("Back", funnel.ana, 100, 1)
    funnel.move("Back", funnel.ana, PROPOSAL, 2)
    funnel.move("Back", funnel.ana, "Opportunity", 3)  # back, and still there
    funnel.create("Later", funnel.ana, 100, 4)
    funnel.move("Later", funnel.ana, PROPOSAL, 5)
    funnel.move("Later", funnel.ana, "Opportunity", 24 * 15)  # back after the period
    funnel.create("After", funnel.budi, 100, 24 * 16)  # in it only after the period
    for actor in (funnel.hana, funnel.ana):
        calls = by_name(report(funnel, actor).calls)
        assert (calls["Opportunity"].deals, calls[PROPOSAL].deals) == (2, 2)


def test_missed_call_callback_time_per_seller(funnel):
    rows = report(funnel).callbacks
    assert [row.seller_name for row in rows] == ["Ana", "Budi", "(nobody yet)"]
    ana, budi, nobody = rows
    # Ana: called back after 4 h (an outbound call) and 2 h (outbound, even if busy).
    assert (ana.missed, ana.called_back, ana.not_called_back) == (2, 2, 0)
    assert ana.avg_seconds == ana.median_seconds == 3 * HOUR
    # Budi: one answered 3 h later when the customer rang again; one never called back.
    assert (budi.missed, budi.called_back, budi.not_called_back) == (2, 1, 1)
    assert budi.avg_seconds == budi.median_seconds == 3 * HOUR
    assert (nobody.missed, nobody.called_back, nobody.avg_seconds,
            nobody.median_seconds) == (1, 0, None, None)


def test_each_seller_is_measured_against_the_callback_target(funnel):
    """Ana called back after 4 h and 2 h, Budi after 3 h and never: with a target of three
    hours Ana made one of two, Budi one of two; with four hours Ana both, Budi still one."""
    def on_target(minutes):
        return {row.seller_name: (row.within_target, row.on_target)
                for row in report(funnel, callback_target_minutes=minutes).callbacks}

    assert on_target(180) == {"Ana": (1, 0.5), "Budi": (1, 0.5), "(nobody yet)": (0, 0.0)}
    assert on_target(240)["Ana"] == (2, 1.0) and on_target(240)["Budi"] == (1, 0.5)
    assert on_target(30)["Ana"] == (0, 0.0)


def test_open_tasks_per_seller_the_overdue_ones_apart(funnel):
    """Tasks have no period: the report counts them as they stand when it is read."""
    session, deal = funnel.session, funnel.deal
    now = h(100)
    tasks.add_task(session, funnel.ana, deal["A1"].id, title="Send the quote", due_at=h(90))
    tasks.add_task(session, funnel.ana, deal["A2"].id, title="Call back", due_at=h(98))
    tasks.add_task(session, funnel.ana, deal["A3"].id, title="Visit", due_at=h(120))
    done = tasks.add_task(session, funnel.budi, deal["B1"].id, title="Demo", due_at=h(50))
    tasks.complete_task(session, funnel.budi, done.id, now=h(60))
    tasks.add_task(session, funnel.budi, deal["B2"].id, title="Contract", due_at=h(110))

    found = {t.seller_name: (t.open, t.overdue, t.longest_overdue_seconds)
             for t in report(funnel, now=now).tasks}
    assert found == {"Ana": (3, 2, 10 * HOUR), "Budi": (1, 0, None)}
    assert [t.seller_name for t in report(funnel, funnel.budi, now=now).tasks] == ["Budi"]


def test_nudges_answered_per_seller_and_stage(funnel):
    rows = [(n.seller_name, n.stage_name, n.fired, n.moved_on, n.lower_priority, n.snooze,
             n.unanswered) for n in report(funnel).nudges]
    assert rows == [("Ana", PROPOSAL, 1, 1, 0, 0, 0),
                    ("Budi", "Opportunity", 1, 0, 1, 0, 0),
                    ("Budi", PROPOSAL, 2, 0, 0, 1, 1)]


# --- weeks ------------------------------------------------------------------------------------


def test_weekly_trend_in_the_company_time_zone(funnel):
    weeks = [(w.start, w.created, w.moved_on, w.won, w.lost) for w in report(funnel).weeks]
    # B1 was lost on Sunday 20:00 UTC, already Monday in Jakarta: the second week.
    assert weeks == [(date(2024, 5, 6), 11, 8, 0, 4), (date(2024, 5, 13), 0, 1, 1, 1)]
    # The same moves seen from London fall in other weeks: the zone decides. (A company in
    # London: its daily tables count London's days.)
    days_rebuild.ensure_zone(funnel.session, "Europe/London")
    london = reports.funnel_report(funnel.session, funnel.hana, pipeline_id=funnel.pipeline.id,
                                   start=date(2024, 5, 5), end=END, time_zone="Europe/London")
    assert [(w.start, w.lost) for w in london.weeks] == [
        (date(2024, 4, 29), 0), (date(2024, 5, 6), 5), (date(2024, 5, 13), 0)]


def test_weeks_across_a_daylight_saving_change(session):
    """Europe/Berlin moves its clocks on Sunday 31 March 2024 at 01:00 UTC."""
    days_rebuild.ensure_zone(session, "Europe/Berlin")  # a company in Berlin
    pipeline = make_pipeline(session)
    ana = make_user(session, "ana")
    # Monday 1 April 00:30 in Berlin (summer time) is Sunday 31 March 22:30 UTC; a day before
    # the change, Monday 25 March 00:30 is Sunday 24 March 23:30 UTC.
    for when in (datetime(2024, 3, 24, 23, 30, tzinfo=UTC),
                 datetime(2024, 3, 31, 22, 30, tzinfo=UTC),
                 datetime(2024, 3, 31, 21, 30, tzinfo=UTC)):  # Sunday 23:30 in Berlin
        deals.create_deal(session, ana, title="Shop", now=when)
    found = reports.funnel_report(session, ana, pipeline_id=pipeline.id,
                                  start=date(2024, 3, 18), end=date(2024, 4, 8),
                                  time_zone="Europe/Berlin")
    assert [(w.start, w.created) for w in found.weeks] == [
        (date(2024, 3, 18), 0), (date(2024, 3, 25), 2), (date(2024, 4, 1), 1)]


# --- the deals behind a figure, and bad input ---------------------------------------------------


def test_deal_filters_list_the_deals_behind_a_figure(funnel):
    found = report(funnel)
    ids = {deal.id: name for name, deal in funnel.deal.items()}
    lost = DealFilter(funnel.pipeline.id, funnel.stage["Opportunity"].id, DealFilter.LOST_FROM,
                      start_utc=found.period.start_utc, end_utc=found.period.end_utc)
    assert sorted(ids[i] for i in reports.deals_matching(funnel.session, funnel.hana, lost)) == [
        "A4", "A5", "A6"]
    in_proposal = DealFilter(funnel.pipeline.id, funnel.stage[PROPOSAL].id,
                             DealFilter.IN_STAGE)
    assert [ids[i] for i in reports.deals_matching(funnel.session, funnel.hana,
                                                   in_proposal)] == ["A3", "P1"]
    assert reports.deals_matching(funnel.session, funnel.budi, in_proposal) == []
    with pytest.raises(Forbidden):
        reports.deals_matching(funnel.session, funnel.budi, DealFilter(
            funnel.pipeline.id, funnel.stage[PROPOSAL].id, DealFilter.IN_STAGE,
            owner_id=funnel.ana.user_id))
    assert in_proposal.query_params() == {"pipeline": str(funnel.pipeline.id),
                                          "stage": str(funnel.stage[PROPOSAL].id),
                                          "what": "in_stage"}


@pytest.mark.parametrize("start, end, zone, message", [
    (date(2024, 5, 6), date(2024, 5, 6), JAKARTA, "end after it starts"),
    (date(2024, 5, 6), date(2024, 5, 1), JAKARTA, "end after it starts"),
    (date(2015, 1, 1), date(2024, 5, 1), JAKARTA, "five years"),
    (date(2024, 5, 6), date(2024, 5, 7), "Mars/Olympus", "Unknown time zone"),
])
def test_bad_periods_are_refused_with_a_reason(session, start, end, zone, message):
    pipeline = make_pipeline(session)
    with pytest.raises(ValidationError, match=message):
        reports.funnel_report(session, make_user(session, "hana", role="head"),
                              pipeline_id=pipeline.id, start=start, end=end, time_zone=zone)


def test_an_empty_pipeline_reports_zeros(session):
    pipeline = make_pipeline(session)
    found = reports.funnel_report(session, make_user(session, "hana", role="head"),
                                  pipeline_id=pipeline.id, start=START, end=END,
                                  time_zone=JAKARTA)
    assert all(s.entered == s.open_deals == 0 and s.conversion is None for s in found.stages)
    assert found.outcomes.win_rate is None and found.outcomes.cycle_median_seconds is None
    assert found.losses.rows == [] and found.calls[0].calls == 0
    assert found.callbacks == [] and found.nudges == []
    assert [w.created for w in found.weeks] == [0, 0]
