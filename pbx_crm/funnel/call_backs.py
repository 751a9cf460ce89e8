"""A call's call back: when the deal's first later call that reached the customer rang.

A missed call is called back by the first call on its deal after it that is a call out or an
answered call. The callback report reads that moment for every missed call of a period; it is
kept on the inbound calls (``calls.called_back_at``) rather than looked for, as the call writer
(``pbx_crm.funnel.calls``) records the calls, in whatever order they arrive:

- a call out, or a call that ends answered, calls back the deal's earlier inbound calls that
  no earlier call had called back (``called_back``: one UPDATE through ``ix_calls_deal_ringing``);
- an inbound call gets, as it is written, the call back recorded before it (a call replayed
  late from the spool): ``CALL_BACK_SO_FAR`` in its INSERT.

Either way the value is the first later reaching call, the same a read of the calls gives; it
does not depend on how the call itself ends, so the hangup of a missed call has nothing to do.
``fill_call_backs`` sets it from the calls in bulk (the migration adding it; calls written
outside the call writer).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, or_, select, update

from ..enums import CallDirection, Disposition
from ..models import Call
from ..models.base import UTCDateTime

calls = Call.__table__
later = calls.alias("later")


def reached(table):
    """A call that reached the customer: any call out, or an answered call."""
    return or_(table.c.direction == CallDirection.OUTBOUND.value,
               table.c.disposition == Disposition.ANSWERED.value)


# Bound names unlike the columns' (an INSERT or UPDATE reserves a column's name for its value).
_AT = bindparam("callback_at", type_=UTCDateTime())
_DEAL = bindparam("callback_deal")

# The call back, recorded already, of a call on ``callback_deal`` ringing at ``callback_at``:
# one probe of ix_calls_deal_ringing (nothing, for a call written as it rings).
CALL_BACK_SO_FAR = (select(func.min(later.c.ringing_at))
                    .where(later.c.deal_id == _DEAL, later.c.ringing_at > _AT, reached(later))
                    .scalar_subquery())

_CALLED_BACK = (update(calls)
                .where(calls.c.deal_id == _DEAL,
                       calls.c.direction == CallDirection.INBOUND.value,
                       calls.c.ringing_at < _AT,
                       or_(calls.c.called_back_at.is_(None), calls.c.called_back_at > _AT))
                .values(called_back_at=_AT)
                .execution_options(synchronize_session=False))


def call_back_params(deal_id: int | None, at: datetime) -> dict:
    """The parameters of ``CALL_BACK_SO_FAR`` for a call on ``deal_id`` ringing at ``at``."""
    return {"callback_deal": deal_id, "callback_at": at}


def call_back_so_far(session, *, deal_id: int, at: datetime) -> datetime | None:
    """The call back, recorded already, of an inbound call on ``deal_id`` ringing at ``at``."""
    return session.connection().execute(select(CALL_BACK_SO_FAR),
                                        call_back_params(deal_id, at)).scalar()


def called_back(session, *, deal_id: int, at: datetime) -> None:
    """A call on ``deal_id`` that rang at ``at`` reached the customer (a call out, an answered
    call): it is the call back of the deal's earlier inbound calls that had none sooner."""
    session.connection().execute(_CALLED_BACK, call_back_params(deal_id, at))


def fill_call_backs(connection) -> None:
    """Set every inbound call's call back from the calls, in one statement (one probe of
    ix_calls_deal_ringing per call)."""
    first_later = (select(func.min(later.c.ringing_at))
                   .where(later.c.deal_id == calls.c.deal_id,
                          later.c.ringing_at > calls.c.ringing_at, reached(later))
                   .scalar_subquery())
    connection.execute(update(calls)
                       .where(calls.c.direction == CallDirection.INBOUND.value,
                              calls.c.deal_id.is_not(None))
                       .values(called_back_at=first_later)
                       .execution_options(synchronize_session=False))
