"""Typed refusals of the CRM core.

Every service refuses through one of these, each carrying a message a person can read. The
message is kept the way gettext catalogs keep text: an English template with named values,
``NotFound("No stage #%(stage_id)s.", stage_id=7)``. ``error.message`` is the English text
(logs, the CLI, tests); ``error.translated(gettext)`` is the same refusal in a catalog's
language, which is what the web UI shows. babel extracts the templates (the error classes
are keywords in ``webui/locale/babel.cfg``), so a template is one string literal at the raise
site, never an f-string or a concatenation. Edges turn refusals into their own shapes: an
HTTP status, a CLI exit code, an AGI status variable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


def N_(message: str) -> str:
    """Marks a template kept apart from its raise (a module constant) for the catalog;
    returns it unchanged (gettext's no-op marker, one of babel's default keywords)."""
    return message


class Phrase(str):
    """Wording passed as a value of a template: "time in stage" in "Unknown setting(s) for
    %(what)s: ...". A plain ``str`` in English wherever it goes (a log, a comparison), and
    translated with the message that carries it; babel extracts ``Phrase("...")``. Names,
    numbers and what the user typed are passed as they are, never as phrases."""

    __slots__ = ()


def fill(template: str, values: Mapping[str, object],
         gettext: Callable[[str], str] | None = None) -> str:
    """``template % values``, phrases among the values in ``gettext``'s language (English
    without it). A template with no values is returned as it is: its ``%`` is plain text."""
    if not values:
        return template
    if gettext is not None:
        values = {name: gettext(value) if isinstance(value, Phrase) else value
                  for name, value in values.items()}
    return template % values


class CrmError(Exception):
    """Base of every refusal; ``message`` is meant for the user, not the log.

    ``template`` and ``values`` are what ``message`` was made of; a caller that passes a
    finished message (no values) gets it back as is, in every language that has no
    translation for it."""

    status = 400

    def __init__(self, message: str, /, **values):
        self.template = message
        self.values = values
        self.message = fill(message, values)
        super().__init__(self.message)

    def translated(self, gettext: Callable[[str], str]) -> str:
        """The message in ``gettext``'s language (its catalog's ``gettext``); the English
        message when the catalog's translation does not fit the values."""
        try:
            return fill(gettext(self.template), self.values, gettext)
        except (KeyError, ValueError, TypeError):
            return self.message


class ValidationError(CrmError):
    """Input that cannot be accepted as given (a form field, a CSV row, a caller number)."""

    def __init__(self, message: str, /, *, field: str | None = None, **values):
        super().__init__(message, **values)
        self.field = field


class NotFound(CrmError):
    status = 404


class Forbidden(CrmError):
    """The user may not see or change this object (a seller reaching for another's deal)."""

    status = 403


class CustomerOfAnotherSeller(Forbidden):
    """A seller reaching for a contact that is another seller's customer (by number, on the
    "New deal" form): not attached, not shown, and the other seller is not named."""

    def __init__(self, message: str, /, *, field: str | None = None, **values):
        super().__init__(message, **values)
        self.field = field


class Conflict(CrmError):
    """The request was valid but the data changed under it, or clashes with what is there."""

    status = 409


class Unavailable(CrmError):
    """The database did not answer: an outage that passes by itself; try again shortly."""

    status = 503


class StaleVersion(Conflict):
    """A change made on an old copy of a deal: someone else moved or edited it first."""


class AlreadyTaken(Conflict):
    """An Unsorted deal that another seller took first."""


class DealClosed(Conflict):
    """A change to a won or lost deal that was not reopened first."""


class NumberConflict(Conflict):
    """A caller number that belongs to several contacts: it is not attached to any of them."""

    def __init__(self, message: str, /, *, contact_ids: list[int], **values):
        super().__init__(message, **values)
        self.contact_ids = contact_ids
