"""Demo data: a believable sales team in Indonesia, made through the services, and its board.

``pbx-crm demo`` calls ``ensure_demo`` then ``print_demo``. Everything is created the way users
and the PBX create it (``create_deal``, ``take_deal``, ``move_deal``, ``close_lost``,
``add_note``..., the calls nobody answered as the PBX's hooks record them), with ``now=``
spread over the past weeks so the time a card has spent in its stage looks real. It fills a
database once: a database that has users already gets no data. The one password of the demo
users is random, printed, never stored, and new at every run: a re-run sets a fresh one for
the demo's own users (through the users service), so the logins are never only in the output
of an earlier run, which may be gone.
"""

from __future__ import annotations

import random
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func
from sqlalchemy.engine import Engine, make_url
from sqlmodel import select

from ..funnel import board, calls, contacts, deals, pipelines, tasks
from ..people import users
from ..robots import rules as robot_rules
from ..config import Settings
from ..db import is_sqlite, transaction, upgrade
from ..enums import DealSource, Role, StageKind
from ..errors import CrmError, NotFound
from ..reporting import days_rebuild
from ..rules.funnel import Actor
from ..models import Deal, Stage, User, utcnow
from ..rules.phones import classify_caller
from ..simulator.pbx import DID

PIPELINE = pipelines.DEFAULT_PIPELINE
SELLER_FUNNEL = pipelines.SELLER_FUNNEL
ADMIN = Actor.system("cli")
PBX = Actor.system("pbx")

# login, name, role, extensions
TEAM = [("head", "Dewi Lestari", Role.HEAD, ()),
        ("ana", "Ana Wijaya", Role.SELLER, ("101",)),
        ("budi", "Budi Santoso", Role.SELLER, ("102",)),
        ("citra", "Citra Kusuma", Role.SELLER, ("103",))]
TWO_DEVICES = ["101a", "101b"]  # the devices that ring for ana's extension

# name, company, phones as people type them, email
CONTACTS = [
    ("Agus Salim", "PT Sinar Mas Logistik", ["0812-1034-5521"], "agus.salim@sinarmaslog.co.id"),
    ("Rina Hartono", "PT Bumi Nusantara Hotel", ["(021) 5790 1234", "0813-2211-0098"],
     "rina@buminusantarahotel.com"),
    ("Hendra Gunawan", "CV Maju Jaya Teknik", ["0857-7012-3344"], None),
    ("Siti Nurhaliza", "PT Karya Sejahtera Abadi", ["021 2992 7000"], "siti@karyasejahtera.id"),
    ("Bambang Wibowo", "PT Cahaya Properti", ["0811-880-2200"], "bambang.w@cahayaproperti.com"),
    ("Putri Ayu Lestari", "Klinik Sehat Bersama", ["0822-4567-1290"], None),
    ("Yusuf Maulana", "PT Mitra Ekspedisi Indonesia", ["031 532 1234", "0852-3301-7788"],
     "yusuf@mitraekspedisi.co.id"),
    ("Dian Permata", "Universitas Harapan Bangsa", ["022 4201 234"], "it@harapanbangsa.ac.id"),
    ("Made Sudarsana", "Villa Ubud Asri", ["0361 975 123", "0813-3760-4411"],
     "reservations@ubudasri.com"),
    ("Fajar Nugroho", "PT Dirgantara Solusi Digital", ["0821-1122-3344"],
     "fajar@dirgantara.digital"),
    ("Lestari Wulandari", "PT Prima Farma", ["(021) 4585 6677"], "lestari@primafarma.co.id"),
    ("Teguh Prasetyo", "CV Berkah Motor", ["0856-4321-8765"], None),
    ("Indah Kusumawati", "PT Global Edukasi", ["0812-9988-7766"], "indah@globaledukasi.id"),
    ("Wahyu Hidayat", "PT Angkasa Travel", ["021 3190 5566"], "wahyu@angkasatravel.co.id"),
    ("Nur Aini", "RS Ibu dan Anak Permata", ["0274 512 345"], "admin@rsiapermata.id"),
    ("Rudi Hermawan", "PT Samudra Perikanan", ["0811-3456-789"], None),
    ("Maya Sari", "PT Bintang Retail", ["0878-8899-0011"], "maya.sari@bintangretail.com"),
    ("Joko Susilo", "Koperasi Tani Makmur", ["0823-5566-7788"], None),
    ("Kartika Dewi", "PT Aneka Kosmetik", ["(021) 8370 2211"], "kartika@anekakosmetik.co.id"),
    ("Eko Saputra", "PT Teknologi Kreasi", ["0813-1717-2828"], "eko@tekkreasi.com"),
    ("Fitri Handayani", "Notaris Fitri Handayani SH", ["0822-1300-4500"], None),
    ("Gita Purnama", "PT Lautan Kimia", ["031 847 9900"], "gita@lautankimia.co.id"),
    ("Hadi Kurniawan", "PT Sentosa Konstruksi", ["0812-6060-7070"], None),
    ("Wayan Artana", "Hotel Sanur Indah", ["0361 288 456"], "gm@sanurindah.com"),
    ("Yanti Rahayu", "Toko Bangunan Rahayu", ["0853-2020-3030"], None),
    ("Ahmad Fauzi", "PT Mandiri Asuransi Syariah", ["(021) 5291 8800"],
     "ahmad.fauzi@mas-syariah.co.id"),
    ("Sari Indrawati", "PT Nusa Kargo", ["0858-6677-1122"], "sari@nusakargo.id"),
    ("Andi Setiawan", "PT Citra Media Kreatif", ["0817-0707-1515"], "andi@citramedia.id"),
    ("Ani Suryani", "Sekolah Tunas Bangsa", ["022 7301 456"], "tu@tunasbangsa.sch.id"),
    ("Dedi Kurnia", "PT Surya Energi", ["0812-4444-1212"], "dedi@suryaenergi.co.id"),
    ("Ratna Sari Dewi", "PT Permata Garmen", ["024 845 6789"], "ratna@permatagarmen.com"),
    ("Budi Hartanto", "PT Jaya Abadi Elektronik", ["0819-2345-6789"], None),
    ("Lina Marlina", "Apotek Sehat Sentosa", ["0896-1234-5678"], None),
    ("Irfan Hakim", "PT Hakim Properti", ["0815-8888-2323"], "irfan@hakimproperti.com"),
    ("Nanda Pratiwi", "PT Sejuk Pendingin", ["0821-9090-8080"], "nanda@sejuk.co.id"),
    ("Rizky Ramadhan", "PT Arta Finansial", ["(021) 2555 1900"], "rizky@artafinansial.id"),
]

# Callers nobody knows yet: nobody answered their calls, which wait in Unsorted for a call
# back. (number, caller ID name or None, how many times they rang)
NEW_CALLERS = [("0812-7788-9900", "TOKO SUMBER REJEKI", 1), ("0857-1100-2299", None, 1),
               ("(021) 6230 4455", "PT ANUGERAH", 2), ("0813-5500-6611", None, 1)]
RING_GROUP_SECONDS = 30  # how long the ring group rings before Dial gives up (NOANSWER)

PRODUCTS = [("Cloud PBX, 25 extensions", 45_000_000), ("SIP trunk, 10 channels", 12_500_000),
            ("Yealink T54W IP phones x 30", 67_500_000), ("Call-centre seats x 12", 96_000_000),
            ("Call recording archive, 3 years", 18_000_000), ("Hotel PBX integration",
                                                               120_000_000),
            ("Annual support contract", 24_000_000), ("IVR menu and queues", 8_500_000),
            ("Video conferencing room", 55_000_000), ("Headsets for the sales floor",
                                                      14_250_000),
            ("Branch offices on one PBX", 150_000_000), ("CRM licences x 10", 30_000_000)]

NOTES = ["Asked for a quote with installation included.",
         "Decision maker is the finance director; meeting next week.",
         "Wants to keep the existing phone numbers (porting from Telkom).",
         "Sent the brochure and price list by e-mail.",
         "Call back Thursday after 14:00.",
         "Competitor offered 10% less; we include on-site training.",
         "Legal is reviewing the contract draft."]

LOST_REASONS = ["Price too high compared with a local reseller",
                "Chose a competitor's hosted PBX",
                "Budget frozen until next fiscal year",
                "No answer after three follow-up calls"]

# How many deals end up in each stage (Unsorted ones are the new callers above).
DEALS_PER_STAGE = {"Opportunity": 7, "Commercial proposal": 6, "Document coordination": 5,
                   "Signature and payment": 4, "Implementation": 3, "Closing": 3, "Won": 5,
                   "Lost": 4}


@dataclass(frozen=True)
class DemoResult:
    created: bool
    # The demo users' password for this run (None: the database is not the demo's).
    password: str | None = None
    # The users that password is set for: the demo's own team.
    logins: tuple[str, ...] = ()


def wipe_sqlite(engine: Engine) -> None:
    """Delete the SQLite database file (and its WAL files) behind ``engine``."""
    if not is_sqlite(engine):
        raise CrmError("--fresh deletes an SQLite file; on PostgreSQL drop and create the "
                       "database yourself")
    database = make_url(engine.url).database
    if not database or database == ":memory:":
        return
    engine.dispose()
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(database + suffix).unlink(missing_ok=True)


def ensure_demo(engine: Engine, settings: Settings, *, now: datetime | None = None,
                password: str | None = None) -> DemoResult:
    """Migrate, then create the demo data unless the database has users already; on the
    demo's own database, give the demo's users a new password instead. The reports' daily
    tables count days in the company's zone first, so the demo's moves are counted in it."""
    upgrade(engine)
    password = password or secrets.token_urlsafe(9)
    with transaction(engine) as session:
        days_rebuild.ensure_zone(session, settings.time_zone)
        created = not session.exec(select(func.count()).select_from(User)).one()
        if created:
            _create(session, settings, password, (now or utcnow()).replace(microsecond=0))
        logins = _demo_logins(session)
        for login in logins if not created else ():
            users.set_password(session, ADMIN, login, password)
    return DemoResult(created=created, password=password if logins else None, logins=logins)


def _demo_logins(session) -> tuple[str, ...]:
    """The demo's team, when the database has it as the demo made it; else none."""
    found = {user.login: user for user, _ in users.list_users(session)}
    team = tuple(login for login, name, role, _ in TEAM
                 if login in found and (found[login].name, found[login].role) == (name,
                                                                                  role.value))
    return team if len(team) == len(TEAM) else ()


def _create(session, settings: Settings, password: str, now: datetime) -> None:
    rng = random.Random(20240817)  # the same demo every time, but for the password
    region = settings.phone_region
    pipeline = _demo_pipeline(session, settings)
    stages = {s.name: s for s in pipelines.stages_of(session, pipeline.id)}
    team = {login: users.create_user(session, ADMIN, login=login, name=name, password=password,
                                     role=role.value, extensions=extensions)
            for login, name, role, extensions in TEAM}
    # Ana answers on a desk phone or a softphone: both ring for 101 (the demo plays such calls).
    users.set_devices(session, ADMIN, team["ana"].id, "101", TWO_DEVICES)
    sellers = [Actor.of(user) for user in team.values() if user.role == Role.SELLER.value]
    people = [contacts.create_contact(session, ADMIN, name=name, company=company, phones=phones,
                                      email=email, region=region)
              for name, company, phones, email in CONTACTS]

    plan = [name for name, count in DEALS_PER_STAGE.items() for _ in range(count)]
    rng.shuffle(plan)
    for index, target_name in enumerate(plan):
        target = stages[target_name]
        contact = people[index % len(people)]
        seller = sellers[index % len(sellers)]
        product, amount = rng.choice(PRODUCTS)
        # Moves between creation and now, at increasing random moments.
        path = _path_to(stages, target, rng)
        created_at = now - timedelta(days=rng.uniform(4, 45))
        span = (now - timedelta(hours=2) - created_at).total_seconds()
        moments = sorted(created_at + timedelta(seconds=rng.uniform(0, span))
                         for _ in range(len(path) + 1))
        from_call = rng.random() < 0.35
        title = f"{product} — {contact.company}"
        if from_call:  # rang in, waited in Unsorted, then a seller took it
            deal = deals.create_deal(session, PBX, title=title, contact_id=contact.id,
                                     source=DealSource.CALL.value, now=created_at)
            deals.take_deal(session, seller, deal.id, now=moments.pop(0))
            deals.update_deal(session, seller, deal.id, expected_version=None,
                              amount_minor=amount * 100, now=moments[0])
        else:
            deal = deals.create_deal(session, seller, title=title, contact_id=contact.id,
                                     amount_minor=amount * 100, now=created_at)
            moments.pop(0)
        if rng.random() < 0.5:
            deals.add_note(session, seller, deal.id, rng.choice(NOTES), now=moments[0])
        for stage in path[1:]:
            when = moments.pop(0)
            if stage.kind == StageKind.LOST.value:
                deals.close_lost(session, seller, deal.id, reason=rng.choice(LOST_REASONS),
                                 expected_version=None, now=when)
            elif stage.kind == StageKind.WON.value:
                deals.close_won(session, seller, deal.id, expected_version=None, now=when)
            else:
                deals.move_deal(session, seller, deal.id, to_stage_id=stage.id,
                                expected_version=None, now=when)

    _missed_calls(session, settings, now, rng)
    _add_robots(session, stages, now)
    _add_tasks(session, sellers, now)


def _missed_calls(session, settings: Settings, now: datetime, rng: random.Random) -> None:
    """The new callers' calls, recorded as the PBX's hooks record a call nobody answers: it
    rings (``record_inbound_call``: the contact and the Unsorted deal are made), the ring
    group rings out and Dial ends NOANSWER (``record_hangup``: the missed call, its callback
    task). Their cards then show the calls and the wait for a call back like a live one's."""
    for index, (number, caller_name, times) in enumerate(NEW_CALLERS):
        rang = now - timedelta(hours=rng.uniform(1, 60))
        for attempt in range(times):
            # Asterisk's uniqueid, "<epoch>.<n>": from the past, so no call played later
            # (whose ids start at the time it runs) can take one for its own.
            uniqueid = f"{int(rang.timestamp())}.{index * 10 + attempt}"
            calls.record_inbound_call(
                session, uniqueid=uniqueid, linkedid=uniqueid,
                caller=classify_caller(re.sub(r"\D", "", number), region=settings.phone_region,
                                       extensions=settings.internal_extensions),
                caller_name=caller_name, did=DID, create_deals=True,
                region=settings.phone_region, now=rang)
            calls.record_hangup(session, uniqueid=uniqueid, dial_status="NOANSWER",
                                hangup_cause=16, now=rang + timedelta(seconds=RING_GROUP_SECONDS))
            rang += timedelta(minutes=rng.uniform(10, 50))  # they tried again later


# Each seller's next steps, on their open deals: one late, one for today, two to come, and
# one done yesterday, so the Tasks page and the cards' next task show a working day.
DEMO_TASKS = (("Send the revised quote", -26), ("Call to confirm the site visit", 3),
              ("Prepare the contract draft", 50), ("Follow up on the invoice", 120))


def _add_tasks(session, sellers: list[Actor], now: datetime) -> None:
    for seller in sellers:
        open_deals = session.exec(
            select(Deal.id).join(Stage, Stage.id == Deal.stage_id)
            .where(Deal.owner_id == seller.user_id, Stage.kind == StageKind.OPEN.value)
            .order_by(Deal.id)).all()
        for deal_id, (title, hours) in zip(open_deals, DEMO_TASKS):
            tasks.add_task(session, seller, deal_id, title=title,
                           due_at=now + timedelta(hours=hours), now=now - timedelta(days=2))
        if len(open_deals) > len(DEMO_TASKS):
            done = tasks.add_task(session, seller, open_deals[len(DEMO_TASKS)],
                                  title="Send the product brochure",
                                  due_at=now - timedelta(days=1), now=now - timedelta(days=3))
            tasks.complete_task(session, seller, done.id, now=now - timedelta(hours=20))


def _demo_pipeline(session, settings: Settings):
    """The pipeline the demo fills: the empty default one `pbx-crm db upgrade` made on a new
    database, when it is still the seller funnel (one board, not two), else a new one."""
    wanted = [pipelines.UNSORTED] + [name for name, _ in SELLER_FUNNEL]
    try:
        pipeline = pipelines.find_pipeline(session, PIPELINE)
    except NotFound:
        pipeline = None
    if pipeline is not None and pipeline.is_default:
        stages = pipelines.stages_of(session, pipeline.id)
        if ([stage.name for stage in stages] == wanted
                and not any(pipelines.stage_deal_count(session, stage.id) for stage in stages)):
            return pipeline
    name = PIPELINE if pipeline is None else f"{PIPELINE} (demo)"
    return pipelines.create_pipeline(session, ADMIN, name=name, stages=SELLER_FUNNEL,
                                     currency=settings.currency, is_default=True)


def _add_robots(session, stages: dict, now: datetime) -> None:
    """Robots that push deals on: a proposal left waiting, a caller nobody took, a call
    answered on a fresh opportunity."""
    robot_rules.create_rule(session, ADMIN, stage_id=stages["Commercial proposal"].id,
                            name="Proposal waiting too long", condition="time_in_stage",
                            condition_params={"business_days": 3}, action="notify_owner",
                            action_params={"message": "Time to move it to document coordination, "
                                                      "or lower its priority."}, now=now)
    robot_rules.create_rule(session, ADMIN, stage_id=stages[pipelines.UNSORTED].id,
                            name="Caller waiting in Unsorted", condition="unsorted_not_taken",
                            condition_params={"minutes": 30}, action="notify_heads", now=now)
    robot_rules.create_rule(session, ADMIN, stage_id=stages["Opportunity"].id,
                            name="A call answered moves it on", condition="call_answered",
                            action="move_to_stage", action_params={"stage": "Commercial proposal"},
                            now=now)


def _path_to(stages: dict, target, rng: random.Random) -> list:
    """The working stages a deal passes on its way to ``target``, from the first one."""
    work = [s for s in stages.values() if s.kind == StageKind.OPEN.value and not s.is_unsorted]
    work.sort(key=lambda s: s.position)
    if target.kind == StageKind.OPEN.value:
        return work[:work.index(target) + 1]
    if target.kind == StageKind.WON.value:
        return [*work, target]
    # A lost deal falls out somewhere along the way.
    return [*work[:rng.randint(1, len(work))], target]


# --- showing it ---------------------------------------------------------------------------

# ISO 4217 minor units where not 2 (amounts are stored in minor units).
_MINOR_DIGITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3,
                 "OMR": 3, "TND": 3}
_SYMBOLS = {"IDR": "Rp", "USD": "$", "EUR": "€", "GBP": "£", "SGD": "S$", "MYR": "RM"}


def format_money(amount_minor: int, currency: str) -> str:
    """A plain money formatter until Babel arrives: "Rp 12.500.000" for IDR.

    Rupiah are shown whole (nobody writes sen) with dots between thousands, as in Indonesia;
    other currencies with their decimals and commas between thousands.
    """
    currency = currency.upper()
    digits = _MINOR_DIGITS.get(currency, 2)
    symbol = _SYMBOLS.get(currency, currency)
    if currency == "IDR":
        rupiah = round(amount_minor / 10**digits)
        return f"{symbol} {rupiah:,}".replace(",", ".")
    major = amount_minor / 10**digits
    return f"{symbol} {major:,.{digits}f}" if len(symbol) > 1 else f"{symbol}{major:,.{digits}f}"


def _age(since: datetime, now: datetime) -> str:
    seconds = max(0, (now - since).total_seconds())
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


CARDS_SHOWN = 4


def print_demo(engine: Engine, result: DemoResult, out, *, now: datetime | None = None) -> None:
    """The board as text, one block per stage, then who can sign in."""
    now = now or utcnow()
    with transaction(engine, read_only=True) as session:
        try:
            pipeline = pipelines.get_pipeline(session)  # the demo's is the default one
        except NotFound:
            pipeline = next(iter(pipelines.list_pipelines(session)), None)
        if pipeline is None:
            print("No pipeline yet.", file=out)
        else:
            _print_board(session, pipeline, out, now)
        # Read inside: a read-only transaction ends in a rollback, which expires the objects.
        team = [(user.login, user.name, user.role, user.active, extensions)
                for user, extensions in users.list_users(session)]

    print(file=out)
    if result.created:
        print(f"Sign in as any of these users, all with the password {result.password}",
              file=out)
    elif result.logins:
        print("The demo data was there already, so none was added. The demo's users have a "
              f"new password for this run:\nsign in as any of them with the password "
              f"{result.password}", file=out)
    else:
        print("The database had users already, so no demo data was added and no password "
              "was changed;\nset one with `pbx-crm user passwd LOGIN`.", file=out)
    for login, name, role, active, extensions in team:
        ext = f"extension {', '.join(extensions)}" if extensions else ""
        state = "" if active else " (deactivated)"
        if result.logins and login not in result.logins:
            state += " (own password: `pbx-crm user passwd LOGIN` sets one)"
        print(f"  {login:<8} {name:<20} {role:<7} {ext}{state}".rstrip(), file=out)


def _print_board(session, pipeline, out, now: datetime) -> None:
    head = session.exec(select(User).where(User.role == Role.HEAD.value, User.active)).first()
    viewer = Actor.of(head) if head else ADMIN  # a head's board shows every deal
    totals = board.column_totals(session, viewer, pipeline.id)
    names = {user.id: user.login for user, _ in users.list_users(session)}
    print(f"Board of “{pipeline.name}” ({pipeline.currency})", file=out)
    for stage in pipelines.stages_of(session, pipeline.id):
        total = totals.get(stage.id)
        count, amount = (total.deals, total.amount_minor) if total else (0, 0)
        kind = "" if stage.kind == StageKind.OPEN.value else f" [{stage.kind}]"
        print(f"\n{stage.name}{kind}: {count} deal{'s' if count != 1 else ''}, "
              f"{format_money(amount, pipeline.currency)}", file=out)
        cards = board.column_cards(session, viewer, stage, limit=CARDS_SHOWN)
        for deal in cards:
            owner = names.get(deal.owner_id, "nobody")
            print(f"  #{deal.id:<4} {_cut(deal.title, 46):<46} {owner:<7} "
                  f"{format_money(deal.amount_minor, deal.currency):>16}  "
                  f"{_age(deal.stage_entered_at, now)} here", file=out)
        if count > len(cards):
            print(f"  … and {count - len(cards)} more", file=out)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
