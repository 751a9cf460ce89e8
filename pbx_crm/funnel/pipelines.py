"""Pipelines and their stages: the columns of the board.

Every pipeline has one Unsorted stage, always first (where the PBX drops deals nobody owns
yet), then its working stages, then its outcomes. Only heads set pipelines up.
"""

from __future__ import annotations

from sqlalchemy import func, update
from sqlmodel import Session, select

from ..enums import StageKind
from ..errors import Conflict, NotFound, Phrase, ValidationError
from ..rules.funnel import Actor, clean_currency, ensure_head
from .journal import audit
from ..models import Deal, Pipeline, Stage

UNSORTED = "Unsorted"

# The funnel a new database starts with (and the demo and the synthetic data use): the
# working stages of a typical seller, then the outcomes. Unsorted comes first by itself.
DEFAULT_PIPELINE = "Sales"
SELLER_FUNNEL = [("Opportunity", "open"), ("Commercial proposal", "open"),
                 ("Document coordination", "open"), ("Signature and payment", "open"),
                 ("Implementation", "open"), ("Closing", "open"),
                 ("Won", "won"), ("Lost", "lost")]


def stage_word(stage: Stage) -> str:
    """A stage as a text kept for later names it: the Unsorted stage by the reader's word for
    it (the stage keeps its English name), any other by the name it was given."""
    return Phrase("Unsorted") if stage.is_unsorted else stage.name


def _clean_name(name: str, what: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 120:
        if what == "pipeline":
            raise ValidationError("A pipeline needs a name of at most 120 characters.",
                                  field="name")
        raise ValidationError("A stage needs a name of at most 120 characters.", field="name")
    return name


def _clean_kind(kind: str) -> str:
    try:
        return StageKind(kind).value
    except ValueError:
        raise ValidationError("A stage is open, won or lost, not “%(kind)s”.",
                              kind=str(kind)[:20], field="stages") from None


def create_pipeline(session: Session, actor: Actor, *, name: str, stages, currency: str,
                    is_default: bool | None = None,
                    creates_deals_from_calls: bool = True) -> Pipeline:
    """A pipeline with Unsorted first, then ``stages`` as (name, kind) pairs in order.

    A pipeline without a won or a lost stage gets "Won" / "Lost" at the end: every deal
    needs a way out.
    """
    ensure_head(actor, Phrase("set up pipelines"))
    name = _clean_name(name, "pipeline")
    if session.exec(select(Pipeline.id).where(Pipeline.name == name)).first():
        raise Conflict("A pipeline named “%(name)s” exists already.", name=name)
    stages = [(_clean_name(n, "stage"), _clean_kind(kind)) for n, kind in stages]
    if not any(kind == StageKind.OPEN.value for _, kind in stages):
        raise ValidationError("A pipeline needs at least one working (open) stage.",
                              field="stages")
    for outcome, default_name in ((StageKind.WON, "Won"), (StageKind.LOST, "Lost")):
        if not any(kind == outcome.value for _, kind in stages):
            stages.append((default_name, outcome.value))
    # Checked after the outcomes are added: an open stage named "Won" would clash with them.
    names = [n.lower() for n, _ in stages] + [UNSORTED.lower()]
    if len(set(names)) != len(names):
        raise ValidationError("Stage names must differ from each other and from Unsorted.",
                              field="stages")
    has_default = session.exec(select(Pipeline.id).where(Pipeline.is_default)).first()
    if is_default and has_default:
        session.exec(update(Pipeline).values(is_default=False))
    position = session.exec(select(func.coalesce(func.max(Pipeline.position), -1))).one() + 1
    pipeline = Pipeline(name=name, currency=clean_currency(currency), position=position,
                        is_default=bool(is_default) or not has_default,
                        creates_deals_from_calls=creates_deals_from_calls)
    session.add(pipeline)
    session.flush()
    session.add(Stage(pipeline_id=pipeline.id, name=UNSORTED, position=0,
                      kind=StageKind.OPEN.value, is_unsorted=True))
    for position, (stage_name, kind) in enumerate(stages, start=1):
        session.add(Stage(pipeline_id=pipeline.id, name=stage_name, position=position,
                          kind=kind))
    session.flush()
    audit(session, actor, "pipeline", pipeline.id, "create",
          {"name": name, "stages": [n for n, _ in stages]})
    return pipeline


def create_default_pipeline(session: Session, actor: Actor, *,
                            currency: str) -> Pipeline | None:
    """The seller funnel as the default pipeline, where calls from new numbers open their
    deals, on a database that has no pipeline yet; None (nothing done) when it has one."""
    if session.exec(select(Pipeline.id)).first() is not None:
        return None
    return create_pipeline(session, actor, name=DEFAULT_PIPELINE, stages=SELLER_FUNNEL,
                           currency=currency, is_default=True)


def why_calls_open_no_deals(session: Session) -> str | None:
    """Why an inbound call from a new number cannot open an Unsorted deal, in words for the
    admin with what to do; None when it can."""
    pipeline = session.exec(select(Pipeline).where(Pipeline.is_default)).first()
    if pipeline is not None:
        if pipeline.creates_deals_from_calls:
            return None
        return (f"the default pipeline “{pipeline.name}” has “Calls from new numbers create "
                "Unsorted deals” turned off (a head turns it on in the web UI's Settings)")
    if session.exec(select(Pipeline.id)).first() is None:
        return ("there is no pipeline yet: add one with `pbx-crm pipeline add Sales --stage "
                "Opportunity --stage \"Commercial proposal\" ... --default` (`pbx-crm db "
                "upgrade` makes one on a new database)")
    return ("no pipeline is the default one: add one with `pbx-crm pipeline add NAME --stage "
            "... --default`")


def set_creates_deals_from_calls(session: Session, actor: Actor, pipeline_id: int,
                                 enabled: bool) -> Pipeline:
    """Whether inbound calls from new callers open Unsorted deals in this pipeline."""
    ensure_head(actor, Phrase("set up pipelines"))
    pipeline = get_pipeline(session, pipeline_id)
    pipeline.creates_deals_from_calls = bool(enabled)
    session.add(pipeline)
    audit(session, actor, "pipeline", pipeline.id, "creates_deals_from_calls",
          {"enabled": bool(enabled)})
    return pipeline


def get_pipeline(session: Session, pipeline_id: int | None = None) -> Pipeline:
    """The pipeline asked for, or the default one (where inbound calls land)."""
    if pipeline_id is None:
        pipeline = session.exec(select(Pipeline).where(Pipeline.is_default)).first()
    else:
        pipeline = session.get(Pipeline, pipeline_id)
    if pipeline is None:
        raise _no_pipeline(pipeline_id)
    return pipeline


def _no_pipeline(pipeline_id: int | None) -> NotFound:
    if pipeline_id is None:
        return NotFound("No pipeline is set up yet; create one first.")
    return NotFound("No pipeline #%(pipeline_id)s.", pipeline_id=pipeline_id)


def find_pipeline(session: Session, name: str) -> Pipeline:
    pipeline = session.exec(select(Pipeline).where(Pipeline.name == name.strip())).first()
    if pipeline is None:
        raise NotFound("No pipeline named “%(name)s”.", name=name.strip()[:120])
    return pipeline


def list_pipelines(session: Session) -> list[Pipeline]:
    return list(session.exec(select(Pipeline).order_by(Pipeline.position, Pipeline.id)))


def pick_pipeline(listed: list[Pipeline], pipeline_id: int | None = None) -> Pipeline:
    """``get_pipeline`` out of ``list_pipelines``: the board lists them all for its
    selector anyway, and a statement less per page load counts there."""
    for pipeline in listed:
        if pipeline.id == pipeline_id if pipeline_id is not None else pipeline.is_default:
            return pipeline
    raise _no_pipeline(pipeline_id)


def stages_of(session: Session, pipeline_id: int) -> list[Stage]:
    """The columns in board order, Unsorted first."""
    return list(session.exec(select(Stage).where(Stage.pipeline_id == pipeline_id)
                             .order_by(Stage.position, Stage.id)))


def get_stage(session: Session, stage_id: int) -> Stage:
    stage = session.get(Stage, stage_id)
    if stage is None:
        raise NotFound("No stage #%(stage_id)s.", stage_id=stage_id)
    return stage


def unsorted_stage(session: Session, pipeline_id: int) -> Stage:
    return session.exec(select(Stage).where(Stage.pipeline_id == pipeline_id,
                                            Stage.is_unsorted)).one()


def first_work_stage(session: Session, pipeline_id: int) -> Stage:
    """Where a deal goes when a seller takes it out of Unsorted."""
    return next(s for s in stages_of(session, pipeline_id)
                if s.kind == StageKind.OPEN.value and not s.is_unsorted)


def outcome_stage(session: Session, pipeline_id: int, kind: StageKind) -> Stage:
    return next(s for s in stages_of(session, pipeline_id) if s.kind == kind.value)


def add_stage(session: Session, actor: Actor, pipeline_id: int, *, name: str,
              kind: str = StageKind.OPEN.value, position: int | None = None) -> Stage:
    """Add a stage; by default an open stage goes before the outcomes, an outcome at the end."""
    ensure_head(actor, Phrase("change stages"))
    get_pipeline(session, pipeline_id)
    name = _clean_name(name, "stage")
    kind = _clean_kind(kind)
    stages = stages_of(session, pipeline_id)
    if any(s.name.lower() == name.lower() for s in stages):
        raise Conflict("This pipeline has a stage named “%(name)s” already.", name=name)
    if position is None:
        position = len(stages)
        if kind == StageKind.OPEN.value:
            position = next((i for i, s in enumerate(stages) if s.kind != StageKind.OPEN.value),
                            len(stages))
    if position < 1:
        raise ValidationError("Unsorted stays the first stage.", field="position")
    stage = Stage(pipeline_id=pipeline_id, name=name, position=position, kind=kind)
    stages.insert(position, stage)
    _renumber(session, stages)
    audit(session, actor, "stage", stage.id, "create", {"name": name, "kind": kind})
    return stage


def rename_stage(session: Session, actor: Actor, stage_id: int, name: str) -> Stage:
    ensure_head(actor, Phrase("change stages"))
    stage = get_stage(session, stage_id)
    if stage.is_unsorted:
        raise ValidationError("The Unsorted stage keeps its name.", field="name")
    name = _clean_name(name, "stage")
    clash = session.exec(select(Stage.id).where(Stage.pipeline_id == stage.pipeline_id,
                                                func.lower(Stage.name) == name.lower(),
                                                Stage.id != stage_id)).first()
    if clash:
        raise Conflict("This pipeline has a stage named “%(name)s” already.", name=name)
    audit(session, actor, "stage", stage_id, "rename", {"from": stage.name, "to": name})
    stage.name = name
    session.add(stage)
    return stage


def reorder_stages(session: Session, actor: Actor, pipeline_id: int, stage_ids) -> list[Stage]:
    """Put the stages in the given order; Unsorted must stay first."""
    ensure_head(actor, Phrase("change stages"))
    get_pipeline(session, pipeline_id)
    stages = {s.id: s for s in stages_of(session, pipeline_id)}
    stage_ids = [int(i) for i in stage_ids]
    if sorted(stage_ids) != sorted(stages):
        raise ValidationError("Give every stage of the pipeline exactly once.", field="stages")
    if not stages[stage_ids[0]].is_unsorted:
        raise ValidationError("Unsorted stays the first stage.", field="stages")
    ordered = [stages[i] for i in stage_ids]
    _renumber(session, ordered)
    audit(session, actor, "pipeline", pipeline_id, "reorder_stages", {"order": stage_ids})
    return ordered


def _renumber(session: Session, stages: list[Stage]) -> None:
    for position, stage in enumerate(stages):
        stage.position = position
        session.add(stage)
    session.flush()


def stage_deal_count(session: Session, stage_id: int) -> int:
    return session.exec(select(func.count()).select_from(Deal)
                        .where(Deal.stage_id == stage_id)).one()
