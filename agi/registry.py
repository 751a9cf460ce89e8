"""The hooks' registry and the helpers every hook uses: one ``Hook`` per dialplan name.

A hook module registers its function with ``@hook``; ``pbx_crm.agi`` imports every hook
module, so ``HOOKS`` is complete once the package is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


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


def caller_of(request, settings):
    """The caller as the AGI environment names them, recognised with the settings' rules."""
    from pbx_crm.rules.phones import classify_caller

    return classify_caller(request.callerid, region=settings.phone_region,
                           extensions=settings.internal_extensions,
                           presentation=request.callingpres)

