"""Typed refusals of the CRM core.

Every service refuses through one of these, each carrying a message a person can read. Edges
turn them into their own shapes: an HTTP status, a CLI exit code, an AGI status variable.
"""


class CrmError(Exception):
    """Base of every refusal; ``message`` is meant for the user, not the log."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ValidationError(CrmError):
    """Input that cannot be accepted as given (a form field, a CSV row, a caller number)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class NotFound(CrmError):
    status = 404


class Forbidden(CrmError):
    """The user may not see or change this object (a seller reaching for another's deal)."""

    status = 403


class CustomerOfAnotherSeller(Forbidden):
    """A seller reaching for a contact that is another seller's customer (by number, on the
    "New deal" form): not attached, not shown, and the other seller is not named."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class Conflict(CrmError):
    """The request was valid but the data changed under it, or clashes with what is there."""

    status = 409


class StaleVersion(Conflict):
    """A change made on an old copy of a deal: someone else moved or edited it first."""


class AlreadyTaken(Conflict):
    """An Unsorted deal that another seller took first."""


class DealClosed(Conflict):
    """A change to a won or lost deal that was not reopened first."""


class NumberConflict(Conflict):
    """A caller number that belongs to several contacts: it is not attached to any of them."""

    def __init__(self, message: str, *, contact_ids: list[int]):
        super().__init__(message)
        self.contact_ids = contact_ids
