"""The funnel's rules, in one place: who may see and change a deal (and so its contact), and
which moves are legal.

Pure functions over plain values (no database, web or telephony code), so the services, the
web routes and the event stream all ask the same questions and get the same answers. Every
refusal is a typed error from ``pbx_crm.errors`` with a message a seller can read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import N_, CustomerOfAnotherSeller, DealClosed, Forbidden, Phrase, ValidationError
from ..enums import Role, StageKind

SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user, or the system itself (PBX, robots, admin CLI)."""

    user_id: int | None
    role: str  # "seller", "head" or "system"
    name: str  # the user's login, or "pbx" / "robot" / "cli" for the system

    @classmethod
    def of(cls, user) -> Actor:
        return cls(user_id=user.id, role=user.role, name=user.login)

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(user_id=None, role=SYSTEM, name=name)

    @property
    def sees_everything(self) -> bool:
        return self.role in (Role.HEAD.value, SYSTEM)


def can_read_deal(actor: Actor, *, owner_id: int | None, in_unsorted: bool) -> bool:
    """A seller sees their own deals and the shared Unsorted column; a head sees all."""
    if actor.sees_everything:
        return True
    return owner_id == actor.user_id or (owner_id is None and in_unsorted)


def can_receive_event(actor: Actor, target_user_id: int | None) -> bool:
    """Whose browser gets a telephony event: a seller the ones addressed to them; a head also
    the copy of every call addressed to nobody in particular (heads watch all calls, once
    each). ``events.events_after`` asks the same in SQL."""
    if target_user_id is None:
        return actor.sees_everything
    return actor.user_id is None or target_user_id == actor.user_id


def ensure_can_read_deal(actor: Actor, deal, stage) -> None:
    if not can_read_deal(actor, owner_id=deal.owner_id, in_unsorted=stage.is_unsorted):
        raise Forbidden("Deal #%(deal_id)s belongs to another seller.", deal_id=deal.id)


def ensure_can_change_deal(actor: Actor, deal, stage) -> None:
    """Changing follows reading: a seller may work their own deals and the Unsorted ones."""
    ensure_can_read_deal(actor, deal, stage)


# --- contacts: seen and changed through their deals ---------------------------------------
#
# A contact has no owner of its own that a seller could hold on to: it is seen, edited and
# merged through its deals, as ``(owner_id, in_unsorted)`` pairs. The merge search asks the
# same in SQL (``contact_card.find_contacts``).

def can_read_contact(actor: Actor, deals: Iterable[tuple[int | None, bool]]) -> bool:
    """A seller sees a contact when they may see one of its deals (one of their own, or one
    waiting in Unsorted); a head sees every contact, one without deals too. What the contact
    page lists of it is still only what ``can_read_deal`` lets them see."""
    if actor.sees_everything:
        return True
    return any(can_read_deal(actor, owner_id=owner_id, in_unsorted=in_unsorted)
               for owner_id, in_unsorted in deals)


def ensure_can_read_contact(actor: Actor, deals: Iterable[tuple[int | None, bool]]) -> None:
    if not can_read_contact(actor, deals):
        raise Forbidden("None of this contact's deals is yours or in Unsorted.")


def ensure_can_change_contact(actor: Actor, deals: Iterable[tuple[int | None, bool]]) -> None:
    """Editing a contact (name, company, e-mail, phones) follows its deals, as changing a
    deal follows reading it: whoever may work one of its deals may edit it."""
    ensure_can_read_contact(actor, deals)


def ensure_can_merge_contacts(actor: Actor, kept: Iterable[tuple[int | None, bool]],
                              merged: Iterable[tuple[int | None, bool]], *,
                              same: bool) -> None:
    """Two contacts become one when the actor may change both (a head always may); a contact
    is never merged with itself."""
    if same:
        raise ValidationError("A contact cannot be merged with itself.", field="other")
    ensure_can_change_contact(actor, kept)
    ensure_can_change_contact(actor, merged)


CUSTOMER_OF_ANOTHER_SELLER = N_("This number belongs to another seller's customer; ask a head "
                                "to hand the customer over.")


def sellers_of_customer(open_deals: Iterable[tuple[int | None, bool]],
                        contact_owner_id: int | None) -> set[int]:
    """Whose customer a contact is: the owners of its open deals (``(owner_id, in_unsorted)``
    each); an Unsorted deal is nobody's yet. A contact with nothing open stays with its own
    seller (``contact_owner_id``, None when that user is gone), whom its next call rings
    first."""
    open_deals = list(open_deals)
    if open_deals:
        return {owner for owner, in_unsorted in open_deals
                if owner is not None and not in_unsorted}
    return set() if contact_owner_id is None else {contact_owner_id}


def can_use_contact(actor: Actor, sellers: Iterable[int]) -> bool:
    """A seller may put a deal on a contact (and so see it) unless it is another seller's
    customer; a head may, to hand a customer over."""
    return actor.sees_everything or all(seller == actor.user_id for seller in sellers)


def ensure_can_use_contact(actor: Actor, sellers: Iterable[int]) -> None:
    if not can_use_contact(actor, sellers):
        # The other seller is not named: the refusal must not become a way to look them up.
        raise CustomerOfAnotherSeller(CUSTOMER_OF_ANOTHER_SELLER, field="phone")


def ensure_head(actor: Actor, what: str) -> None:
    """``what`` completes "Only a head may ..." ("set up robots"): a phrase, translated with
    the refusal (callers mark it ``Phrase(...)`` for the catalog)."""
    if not actor.sees_everything:
        raise Forbidden("Only a head may %(what)s.", what=Phrase(what))


def ensure_open(deal, stage) -> None:
    if stage.kind != StageKind.OPEN.value:
        if stage.kind == StageKind.WON.value:
            raise DealClosed("Deal #%(deal_id)s is closed as won; reopen it first.",
                             deal_id=deal.id)
        raise DealClosed("Deal #%(deal_id)s is closed as lost; reopen it first.",
                         deal_id=deal.id)


def check_move(deal, from_stage, to_stage, *, lost_reason: str | None) -> str | None:
    """Validate a move and return the cleaned lost reason (None unless moving to a lost stage)."""
    if to_stage.pipeline_id != deal.pipeline_id:
        raise ValidationError("Stage “%(stage)s” belongs to another pipeline.",
                              stage=to_stage.name, field="stage")
    ensure_open(deal, from_stage)
    if to_stage.is_unsorted and deal.owner_id is not None:
        raise ValidationError("A deal with an owner cannot go back to Unsorted; "
                              "reassign it instead.", field="stage")
    if to_stage.kind == StageKind.LOST.value:
        reason = (lost_reason or "").strip()
        if not reason:
            raise ValidationError("Say why the deal was lost.", field="lost_reason")
        if len(reason) > 500:
            raise ValidationError("The lost reason is longer than 500 characters.",
                                  field="lost_reason")
        return reason
    return None


def check_owner_for_stage(owner_id: int | None, stage) -> None:
    """Outside Unsorted every deal has a responsible seller."""
    if owner_id is None and not stage.is_unsorted:
        raise ValidationError("A deal in “%(stage)s” needs an owner.", stage=stage.name,
                              field="owner")


def clean_currency(currency: str) -> str:
    code = (currency or "").strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ValidationError("A currency is a three-letter code such as IDR.",
                              field="currency")
    return code
