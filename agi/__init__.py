"""The AGI hooks the dialplan calls, in one registry keyed by the name the dialplan uses.

``agi://127.0.0.1:4573/<name>`` (FastAGI) and ``AGI(pbx-crm.agi,<name>,...)`` (process AGI,
relayed to the FastAGI server) both reach ``HOOKS[<name>]`` through one dispatcher
(``pbx_crm.telephony.dispatcher``), which owns the transaction, the time budget and the
spool. A hook reads the request, calls one service, and returns the channel variables to set;
it never commits and is safe to run twice for the same call.
"""

from .registry import HOOKS
from . import answered, hangup, incoming, outbound  # noqa: F401  (they register)

__all__ = ["HOOKS"]
