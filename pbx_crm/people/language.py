"""What a user reads later, in their language: the catalogs, and texts kept as templates.

A text the services write for someone to read later (a timeline line, a notification, an
e-mail) is made as ``Words("Done: %(title)s", title=task.title)``: an English template, one
string literal that babel extracts (``Words`` is a keyword in ``webui/locale/babel.cfg``),
with named values, the way refusals are kept (``pbx_crm.errors``). ``words.english`` is
stored as the text (the export, the CLI, rows read by older code); ``words.kept()`` is stored
beside it (``{"say": ...}`` in a row's JSON ``data``), and ``Words.from_kept(...)`` reads it
back, to be ``said(gettext)`` in the reader's language. A value that needs translating is a
``Phrase`` (an outcome, "Unsorted") or ``Words`` of its own; names, numbers, titles and
stage names are passed as they are and never translated, save a deal title the PBX gave
("Call from <caller>", ``rules.deal_titles``): stored in English, it is said as the pages say
it, in the reader's words (rows written before read so too).

``catalog(language)`` is a language's compiled catalog, read from the web UI's package data
(``pbx_crm.webui``'s ``locale`` folder, found without importing the web UI): the pages, and
the e-mails the robots and reminders send, read the same one. English is the source.
"""

from __future__ import annotations

import functools
import gettext
import importlib.util
import io
from collections.abc import Callable, Mapping
from importlib import resources

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from ..errors import CrmError, Phrase, fill
from ..rules.deal_titles import caller_of_call_title

CATALOG_PACKAGE = "pbx_crm.webui"
SOURCE_LANGUAGE = "en"


def _locale_folder():
    """The catalogs' folder inside the installed package, without importing the web UI (the
    services may not: its import would pull in Bottle and every route)."""
    spec = importlib.util.find_spec(CATALOG_PACKAGE)
    reader = spec.loader.get_resource_reader(spec.name) if spec and spec.loader else None
    root = reader.files() if reader is not None else resources.files(CATALOG_PACKAGE)
    return root / "locale"


@functools.cache
def catalog(language: str) -> gettext.NullTranslations:
    """The catalog for ``language``, compiled from its .po file when first asked for (no .mo
    files to keep in step); English, or a language without a catalog, reads as written."""
    if language == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    path = _locale_folder() / language / "LC_MESSAGES" / "messages.po"
    if not path.is_file():
        return gettext.NullTranslations()
    with path.open("rb") as file:
        messages = read_po(file, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, messages)
    buffer.seek(0)
    return Translations(fp=buffer)


class Words:
    """An English template and its named values, said in any catalog's language."""

    __slots__ = ("template", "values")

    def __init__(self, template: str, /, **values):
        self.template = template
        self.values = values
        fill(template, self._english_values())  # a missing value fails here, at the writer

    @classmethod
    def of(cls, error: CrmError) -> Words:
        """A refusal's message as words: its template is in the catalogs already."""
        return cls(error.template, **error.values)

    def _english_values(self) -> dict[str, object]:
        return {name: value.english if isinstance(value, Words) else value
                for name, value in self.values.items()}

    @property
    def english(self) -> str:
        return fill(self.template, self._english_values())

    def __str__(self) -> str:
        return self.english

    def __repr__(self) -> str:
        return f"Words({self.template!r}, **{self.values!r})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, Words) and (self.template, self.values)
                == (other.template, other.values))

    __hash__ = None

    def said(self, gettext: Callable[[str], str] | None = None) -> str:
        """The text in ``gettext``'s language (a catalog's ``gettext``); the English text
        when the catalog's translation does not fit the values."""
        if gettext is None:
            return self.english
        try:
            values = {name: _said_value(value, gettext)
                      for name, value in self.values.items()}
            return fill(gettext(self.template), values, gettext)
        except (KeyError, ValueError, TypeError):
            return self.english

    def kept(self) -> dict:
        """The words as JSON keeps them: phrases and inner words marked, other values as
        they are (numbers, names), anything else as its text."""
        return {"template": self.template,
                "values": {name: _kept(value) for name, value in self.values.items()}}

    @classmethod
    def from_kept(cls, kept: object) -> Words | None:
        """The words ``kept()`` made, None for anything else (a row written before words
        were kept, or damaged by hand)."""
        if not isinstance(kept, Mapping) or not isinstance(kept.get("template"), str) \
                or not isinstance(kept.get("values", {}), Mapping):
            return None
        values = {}
        for name, value in kept.get("values", {}).items():
            if isinstance(value, Mapping):
                if isinstance(value.get("phrase"), str):
                    value = Phrase(value["phrase"])
                else:
                    value = cls.from_kept(value.get("words"))
                    if value is None:
                        return None
            values[name] = value
        words = cls.__new__(cls)
        words.template, words.values = kept["template"], values
        try:
            words.english
        except (KeyError, ValueError, TypeError):
            return None
        return words


def _said_value(value: object, gettext: Callable[[str], str]) -> object:
    """A value as its reader reads it: inner words in their language, and a deal title the
    PBX gave (stored in English, as the title is) in their words; others as they are."""
    if isinstance(value, Words):
        return value.said(gettext)
    caller = caller_of_call_title(value) if isinstance(value, str) else None
    if caller:
        return Words("Call from %(number)s", number=caller).said(gettext)
    return value


def _kept(value: object) -> object:
    if isinstance(value, Words):
        return {"words": value.kept()}
    if isinstance(value, Phrase):
        return {"phrase": str(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def said(data: object, text: str | None, gettext: Callable[[str], str] | None) -> str:
    """A stored text as its reader reads it: the words kept in the row's ``data`` (under
    ``"say"``) in ``gettext``'s language, or the text as stored when it kept none."""
    words = Words.from_kept(data.get("say")) if isinstance(data, Mapping) else None
    if words is None:
        return text or ""
    return words.said(gettext)
