"""Setting up the funnel: pipelines, their columns, and the Unsorted column each keeps first."""

import pytest

from factories import ADMIN, make_pipeline, make_user, stages_by_name
from pbx_crm.funnel import pipelines
from pbx_crm.errors import Conflict, Forbidden, NotFound, ValidationError


def columns(session, pipeline) -> list[tuple[str, str]]:
    return [(s.name, s.kind) for s in pipelines.stages_of(session, pipeline.id)]


def test_a_new_pipeline_opens_with_unsorted_and_gets_won_and_lost_when_missing(session):
    pipeline = make_pipeline(session, stages=[("Lead", "open"), ("Quote", "open")])
    assert columns(session, pipeline) == [("Unsorted", "open"), ("Lead", "open"),
                                          ("Quote", "open"), ("Won", "won"), ("Lost", "lost")]
    [unsorted] = [s for s in pipelines.stages_of(session, pipeline.id) if s.is_unsorted]
    assert unsorted.position == 0
    assert pipelines.first_work_stage(session, pipeline.id).name == "Lead"


def test_an_outcome_given_by_the_head_is_kept_and_only_the_missing_one_added(session):
    pipeline = make_pipeline(session, stages=[("Lead", "open"), ("Paid", "won")])
    assert columns(session, pipeline) == [("Unsorted", "open"), ("Lead", "open"),
                                          ("Paid", "won"), ("Lost", "lost")]


def test_a_pipeline_needs_a_working_stage(session):
    with pytest.raises(ValidationError, match="working"):
        make_pipeline(session, stages=[("Paid", "won"), ("Gone", "lost")])
    assert pipelines.list_pipelines(session) == []


@pytest.mark.parametrize("stages", [
    [("Lead", "open"), ("lead", "open")],
    [("Unsorted", "open"), ("Lead", "open")],
    [("Lead", "open"), ("Won", "open")],  # the Won added for it would clash
], ids=["twice", "unsorted", "clashes-with-added-outcome"])
def test_stage_names_differ_from_each_other_and_from_unsorted(session, stages):
    with pytest.raises(ValidationError, match="must differ"):
        make_pipeline(session, stages=stages)
    assert pipelines.list_pipelines(session) == []


def test_a_stage_kind_is_open_won_or_lost(session):
    with pytest.raises(ValidationError) as refused:
        make_pipeline(session, stages=[("Lead", "open"), ("Parked", "paused")])
    assert refused.value.field == "stages"


def test_two_pipelines_cannot_share_a_name(session):
    make_pipeline(session, name="Sales")
    with pytest.raises(Conflict, match="Sales"):
        make_pipeline(session, name="  Sales ")


def test_there_is_one_default_pipeline_and_a_new_default_takes_over(session):
    sales = make_pipeline(session, name="Sales", is_default=False)
    partners = make_pipeline(session, name="Partners")
    assert pipelines.get_pipeline(session).id == sales.id  # the first is the default anyway
    support = make_pipeline(session, name="Support", is_default=True)
    for pipeline in (sales, partners, support):
        session.refresh(pipeline)
    assert [p.is_default for p in (sales, partners, support)] == [False, False, True]
    assert pipelines.get_pipeline(session).id == support.id


def test_without_pipelines_there_is_no_default_to_land_calls_in(session):
    with pytest.raises(NotFound, match="No pipeline"):
        pipelines.get_pipeline(session)


# --- changing the columns -----------------------------------------------------------------


@pytest.fixture
def pipeline(session):
    return make_pipeline(session, stages=[("Lead", "open"), ("Quote", "open")])


def test_a_new_working_stage_goes_before_the_outcomes_and_an_outcome_at_the_end(
        session, pipeline):
    pipelines.add_stage(session, ADMIN, pipeline.id, name="Contract")
    pipelines.add_stage(session, ADMIN, pipeline.id, name="Cancelled", kind="lost")
    assert [name for name, _ in columns(session, pipeline)] == [
        "Unsorted", "Lead", "Quote", "Contract", "Won", "Lost", "Cancelled"]
    positions = [s.position for s in pipelines.stages_of(session, pipeline.id)]
    assert positions == list(range(7))


def test_a_stage_goes_where_the_head_puts_it_but_never_before_unsorted(session, pipeline):
    pipelines.add_stage(session, ADMIN, pipeline.id, name="Qualified", position=2)
    assert [name for name, _ in columns(session, pipeline)][:4] == [
        "Unsorted", "Lead", "Qualified", "Quote"]
    with pytest.raises(ValidationError, match="Unsorted stays"):
        pipelines.add_stage(session, ADMIN, pipeline.id, name="Inbox", position=0)


def test_an_added_stage_needs_a_new_name_and_a_known_kind(session, pipeline):
    for taken in ("quote", "Unsorted"):
        with pytest.raises(Conflict):
            pipelines.add_stage(session, ADMIN, pipeline.id, name=taken)
    with pytest.raises(ValidationError):
        pipelines.add_stage(session, ADMIN, pipeline.id, name="Parked", kind="paused")
    assert len(pipelines.stages_of(session, pipeline.id)) == 5


def test_a_stage_is_renamed_but_unsorted_keeps_its_name(session, pipeline):
    stage = stages_by_name(session, pipeline)
    pipelines.rename_stage(session, ADMIN, stage["Quote"].id, "  Proposal ")
    assert stage["Quote"].name == "Proposal"
    with pytest.raises(ValidationError, match="keeps its name"):
        pipelines.rename_stage(session, ADMIN, stage["Unsorted"].id, "Inbox")
    for clash in ("lead", "Unsorted"):
        with pytest.raises(Conflict, match="already"):
            pipelines.rename_stage(session, ADMIN, stage["Quote"].id, clash)
    assert stage["Quote"].name == "Proposal"


def test_stages_are_reordered_with_unsorted_first(session, pipeline):
    stage = stages_by_name(session, pipeline)
    order = ["Unsorted", "Quote", "Lead", "Won", "Lost"]
    pipelines.reorder_stages(session, ADMIN, pipeline.id, [stage[n].id for n in order])
    assert [name for name, _ in columns(session, pipeline)] == order
    with pytest.raises(ValidationError, match="Unsorted stays"):
        pipelines.reorder_stages(session, ADMIN, pipeline.id,
                                 [stage[n].id for n in ["Lead", "Unsorted", "Quote", "Won",
                                                        "Lost"]])
    assert [name for name, _ in columns(session, pipeline)] == order


@pytest.mark.parametrize("order", [
    ["Unsorted", "Lead", "Quote", "Won"],
    ["Unsorted", "Lead", "Lead", "Quote", "Won", "Lost"],
    ["Unsorted", "Lead", "Quote", "Won", "Lost", "Elsewhere"],
], ids=["one-missing", "one-twice", "a-foreign-stage"])
def test_a_new_order_lists_every_stage_of_the_pipeline_once(session, pipeline, order):
    other = make_pipeline(session, name="Partners", stages=[("Elsewhere", "open")])
    stage = stages_by_name(session, pipeline) | {"Elsewhere": stages_by_name(
        session, other)["Elsewhere"]}
    with pytest.raises(ValidationError, match="exactly once"):
        pipelines.reorder_stages(session, ADMIN, pipeline.id, [stage[n].id for n in order])


def test_reordering_an_unknown_pipeline_is_not_found(session):
    with pytest.raises(NotFound):
        pipelines.reorder_stages(session, ADMIN, 999, [])


def test_a_seller_cannot_set_up_pipelines(session, pipeline):
    ana = make_user(session, "ana")
    stage = stages_by_name(session, pipeline)
    attempts = [
        lambda: pipelines.create_pipeline(session, ana, name="Mine", stages=[("Lead", "open")],
                                          currency="IDR"),
        lambda: pipelines.add_stage(session, ana, pipeline.id, name="Mine"),
        lambda: pipelines.rename_stage(session, ana, stage["Lead"].id, "Mine"),
        lambda: pipelines.reorder_stages(session, ana, pipeline.id,
                                         [s.id for s in stage.values()]),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden, match="Only a head"):
            attempt()
    assert [name for name, _ in columns(session, pipeline)] == [
        "Unsorted", "Lead", "Quote", "Won", "Lost"]
