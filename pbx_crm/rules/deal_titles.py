"""The title the PBX gives a deal it opens for a caller: "Call from <caller>", in English as
stored, naming the caller by number until the contact has a name (``deals.deal_for_caller``,
``contact_edit``). Whoever shows a title (the pages, a stored notice said in its reader's
language) recognises such a title here and says it in the reader's words.
"""

from __future__ import annotations

CALL_TITLE = "Call from {}"


def call_deal_title(caller: str) -> str:
    return CALL_TITLE.format(caller)[:200]


def caller_of_call_title(title: str) -> str | None:
    """The caller a title the PBX gave names ("Call from <caller>"), so a page can say it in
    the reader's language; None for a title someone wrote."""
    prefix = CALL_TITLE.format("")
    return title[len(prefix):] or None if title.startswith(prefix) else None
