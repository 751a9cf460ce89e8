"""The hooks' registry and the helpers every hook uses: one ``Hook`` per dialplan name.

A hook module registers its function with ``@hook``; ``pbx_crm.agi`` imports every hook
module, so ``HOOKS`` is complete once the package is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pbx_crm.config import stored_pbx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hook:
    name: str
    run: Callable  # (session, request, context) -> dict[str, str]
    # Which call a request belongs to, so the spool can keep one call's requests in order.
    call_key: Callable  # (request) -> str
    # A read-only answer for the dialplan, read before ``run`` takes the write lock: should
    # the recording not be in by the budget, the answer still goes out (its request spooled).
    answer: Callable | None = None  # (connection, request, context) -> dict[str, str]


HOOKS: dict[str, Hook] = {}


def hook(call_key: Callable, answer: Callable | None = None):
    """Register the decorated function under its own name, the name the dialplan uses."""

    def register(function):
        HOOKS[function.__name__] = Hook(function.__name__, function, call_key, answer)
        return function

    return register


def arg(request, position: int, default: str = "") -> str:
    """The dialplan argument at ``position`` (1-based), as Asterisk numbers them."""
    return request.args[position - 1] if len(request.args) >= position else default


def pbx_of(request, settings) -> str | None:
    """The box the call is on, as the dialplan's ``CRM_PBX`` names it in the hook's query
    (``${CRM_AGI}/answered?pbx=${CRM_PBX}``), stored-form: None for the default box. A name
    the settings do not know is logged (once) and kept: it matches no seller, so nobody is
    popped for a phone of a box the CRM cannot tell apart."""
    name = request.query.get("pbx", "").strip().lower()
    if name and name not in settings.pbx_names and name not in _UNKNOWN_PBXES:
        _UNKNOWN_PBXES.add(name)
        log.error(
            "the dialplan says CRM_PBX=%s, a box the settings do not define (known: %s): "
            "add [pbx:%s] to the config file or correct CRM_PBX in [pbx-crm-settings]; its "
            "calls are recorded, but no seller's phone on it is recognised", name,
            ", ".join(settings.pbx_names), name)
    return stored_pbx(name)


_UNKNOWN_PBXES: set[str] = set()  # said once per process


def caller_of(request, settings):
    """The caller as the AGI environment names them, recognised with the settings' rules."""
    from pbx_crm.rules.phones import classify_caller

    return classify_caller(request.callerid, region=settings.phone_region,
                           extensions=settings.internal_extensions,
                           presentation=request.callingpres)

