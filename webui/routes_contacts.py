"""A contact's page: who the customer is, their deals and calls; editing the contact, its
phones, and merging a duplicate into it.

The guard in ``app.WebUI`` checks deal routes only: here the services check, first thing,
that the user may see the contact (``contacts.readable_contact``) or change it. A refusal
of a form is shown next to the field it is about, in the user's language, with what they
typed kept; a refusal of the page itself is the error page. Merging asks first: the merge
page says what will move, and its button does it.
"""

from __future__ import annotations

import bottle

from pbx_crm.db import transaction
from pbx_crm.errors import Conflict, CrmError, ValidationError
from pbx_crm.funnel import contact_card, contact_edit, contact_merge

from .app import WebUI, form, query

FIELDS = ("name", "company", "email", "phone", "q", "other")


def gettext(message: str) -> str:
    """Marks the services' refusals met on these pages for the web UI's catalog check
    (``tests/test_web_i18n.py`` reads ``webui/`` only); ``said`` translates them when shown
    (the services say them in English)."""
    return message


SERVICE_REFUSALS = (
    gettext("A contact needs a name."), gettext("A name is at most 200 characters."),
    gettext("A company name is at most 200 characters."),
    gettext("A contact has at most 20 phone numbers."),
    gettext("No contact #%(contact_id)s; it may have been merged into another one."),
    gettext("None of this contact's deals is yours or in Unsorted."),
    gettext("A contact cannot be merged with itself."), gettext("Choose the other contact."),
    gettext("Someone else changed this contact meanwhile; reload the page and try again."),
    gettext("Type the phone number to add."), gettext("This contact has this number already."),
    gettext("Another contact has this number; if it is the same customer, merge the two "
            "contacts."),
    gettext("This contact has no such number (any more)."),
    gettext("A search is at most 100 characters."),
    gettext("Search for letters, digits or signs only."),
)


def register(ui: WebUI) -> None:
    app = ui.app

    def said(error: CrmError, typed: str = "") -> str:
        """The refusal in the user's language. A refusal that quotes what was typed (a phone
        number, an e-mail address) is said again from the typed text when the catalog has
        no words for the service's English sentence."""
        text = error.translated(ui.translations[ui.language()].gettext)
        if text != error.message or ui.language() == "en":
            return text
        field = getattr(error, "field", None)
        if field == "phone" and typed:
            return ui.gettext("“%(number)s” is not a phone number.", number=typed[:40])
        if field == "email" and typed:
            return ui.gettext("“%(address)s” is not an e-mail address.", address=typed[:60])
        return ui.gettext("This cannot be saved as it is; check what you typed.")

    def page(contact_id: int, *, errors: dict | None = None, values: dict | None = None,
             error: str | None = None, notice: str | None = None, status: int = 200):
        errors = dict(errors or {})
        q = " ".join(query().get("q", "").split())[:200]
        found = None
        try:
            with transaction(ui.engine, read_only=True) as session:
                card = contact_card.contact_card(session, ui.actor, contact_id)
                if q:
                    try:
                        found = contact_card.find_contacts(
                            session, ui.actor, q, region=ui.settings.phone_region,
                            exclude_id=contact_id)
                    except ValidationError as refusal:
                        errors["q"] = said(refusal)
        except CrmError as refusal:
            return ui.render("error.html", status=refusal.status, error=said(refusal))
        return ui.render("contact.html", card=card, errors=errors, values=values or {},
                         q=q, found=found, error=error, notice=notice, status=status)

    def change(contact_id: int, work, *, typed: str = "", keep_values: bool = True,
               done: str | None = None):
        """Run ``work(session, values)`` in one transaction; back to the page, or the page
        again with the refusal where it belongs (nothing was changed)."""
        values = form()
        try:
            with transaction(ui.engine) as session:
                work(session, values)
        except CrmError as refusal:
            field = getattr(refusal, "field", None)
            text = said(refusal, values.get(typed, "") if field == typed else "")
            kept = ({name: values.get(name, "") for name in values}
                    if keep_values and not isinstance(refusal, Conflict) else {})
            if field in FIELDS:
                return page(contact_id, errors={field: text}, values=kept,
                            status=refusal.status)
            return page(contact_id, error=text, values=kept, status=refusal.status)
        return bottle.redirect(done or f"/contacts/{contact_id}", 303)

    @app.get("/contacts/<contact_id:int>", name="contact")
    def show_contact(contact_id):
        notice = ui.gettext("The two contacts are one now.") if query().get("merged") else None
        return page(contact_id, notice=notice)

    @app.post("/contacts/<contact_id:int>/edit", name="contact_edit")
    def edit(contact_id):
        def work(session, values):
            contact_edit.update_contact(
                session, ui.actor, contact_id, name=values.get("name", ""),
                company=values.get("company", ""), email=values.get("email", ""),
                shown={field: values.get("shown_" + field) for field in contact_edit.FIELDS}
                if "shown_name" in values else None)
        return change(contact_id, work, typed="email")

    @app.post("/contacts/<contact_id:int>/phones", name="contact_phone_add")
    def add_phone(contact_id):
        def work(session, values):
            contact_edit.add_contact_phone(session, ui.actor, contact_id,
                                           values.get("phone", ""),
                                           region=ui.settings.phone_region)
        return change(contact_id, work, typed="phone")

    @app.post("/contacts/<contact_id:int>/phones/<phone_id:int>/remove",
              name="contact_phone_remove")
    def remove_phone(contact_id, phone_id):
        return change(contact_id, lambda session, values: contact_edit.remove_contact_phone(
            session, ui.actor, contact_id, phone_id), keep_values=False)

    def other_id(values) -> int:
        text = (values.get("other_id") or "").strip()
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            raise ValidationError("Choose the other contact.", field="other")
        return int(text)

    @app.get("/contacts/<contact_id:int>/merge", name="contact_merge")
    def confirm_merge(contact_id):
        try:
            with transaction(ui.engine, read_only=True) as session:
                plan = contact_merge.merge_plan(session, ui.actor, kept_id=contact_id,
                                                merged_id=other_id(query()))
        except CrmError as refusal:
            if getattr(refusal, "field", None) == "other":
                return page(contact_id, errors={"other": said(refusal)},
                            status=refusal.status)
            return ui.render("error.html", status=refusal.status, error=said(refusal))
        return ui.render("contact_merge.html", plan=plan)

    @app.post("/contacts/<contact_id:int>/merge")
    def merge(contact_id):
        def work(session, values):
            contact_merge.merge_contacts(session, ui.actor, kept_id=contact_id,
                                         merged_id=other_id(values))
        return change(contact_id, work, keep_values=False,
                      done=f"/contacts/{contact_id}?merged=1")
