"""Who calls the emulated PBX: a believable mix of callers and how their calls end.

Numbers the CRM does not know yet come as an Indonesian trunk sends them (mobile and landline,
``0...`` or ``+62...``); known numbers are the contacts' own, in either form.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

from .pbx import OWNER, RING_GROUP, SimulatedCall

# Mobile prefixes of Indonesian operators (08xx), for callers the CRM does not know yet.
_MOBILE_PREFIXES = ("811", "812", "813", "821", "822", "852", "853", "856", "857", "858",
                    "877", "878", "881", "895", "896")
_AREA_CODES = ("21", "22", "24", "31", "61", "274", "361")
_TRUNK_NAMES = ("TOKO SUMBER JAYA", "CV MAKMUR ABADI", "PT KARYA MANDIRI", "BENGKEL RAHMAT",
                "IBU SRI WAHYUNI", "PT DUTA LOGISTIK", "WARUNG BAROKAH", "HOTEL MELATI")


def random_calls(rng: random.Random, known_numbers: Sequence[str] = (), *,
                 ring_group: Sequence[str] = RING_GROUP) -> Iterator[SimulatedCall]:
    """Believable calls, endlessly: about 45% from callers the CRM does not know (they land in
    Unsorted), 45% from ``known_numbers`` (E.164; they ring their seller first), 10% with the
    number withheld; about 15% end unanswered (missed, the caller giving up, all busy). Known
    numbers come as the trunk sends them, ``0812...`` or ``+62812...``."""
    ring_group = tuple(ring_group)
    while True:
        kind = rng.random()
        if kind < 0.10:
            caller, name = "", ""
        elif kind < 0.55 or not known_numbers:
            caller, name = _new_number(rng), rng.choice(_TRUNK_NAMES) if rng.random() < 0.3 else ""
        else:
            caller, name = _as_trunk_sends(rng.choice(known_numbers), rng), ""
        known = bool(caller) and kind >= 0.55 and bool(known_numbers)
        ending = rng.random()
        answer = (OWNER if known and rng.random() < 0.75 else rng.choice(ring_group))
        unanswered = "missed"
        if ending >= 0.85:
            answer = None
            unanswered = "missed" if ending < 0.93 else "abandoned" if ending < 0.98 else "busy"
        ring = round(rng.uniform(2, 12) if answer else rng.uniform(4, 25), 1)
        talk = int(min(300, max(5, rng.lognormvariate(math.log(60), 0.8))))
        yield SimulatedCall(caller, name, answer, unanswered, owner_first=rng.random() < 0.9,
                            ring_seconds=ring, talk_seconds=talk)


def _new_number(rng: random.Random) -> str:
    if rng.random() < 0.8:
        number = "8" + rng.choice(_MOBILE_PREFIXES)[1:] + "".join(
            rng.choice("0123456789") for _ in range(rng.choice((7, 8))))
    else:
        area = rng.choice(_AREA_CODES)
        number = area + str(rng.randint(2, 9)) + "".join(
            rng.choice("0123456789") for _ in range(8 - len(area)))
    return ("0" if rng.random() < 0.5 else "+62") + number


def _as_trunk_sends(e164: str, rng: random.Random) -> str:
    if e164.startswith("+62") and rng.random() < 0.5:
        return "0" + e164[3:]
    return e164
