"""Synthetic data for benchmarks: many contacts and deals, written fast and consistent.

``pbx-crm seed`` calls ``seed_synthetic``; benchmarks call it directly. The set-up (the
pipeline, the seller accounts) goes through the services. The bulk (contacts, phones, deals,
their stage history and timeline) is generated a chunk at a time and handed to the driver's
``executemany`` as plain tuples (see ``_Bulk`` for why not through SQLAlchemy's type layer), so
a million deals stream through in constant memory instead of one ORM object each. The rows are
the ones the services would write: a deal's history is the path it took to its stage, owners
and outcomes obey the funnel rules, phones are valid E.164 numbers of the configured region.
The same ``random_seed`` and ``now`` give the same data.
"""

from __future__ import annotations

import bisect
import itertools
import random
import secrets
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import phonenumbers
from argon2 import PasswordHasher
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..funnel import pipelines, stage_totals
from ..reporting import days as report_days, days_rebuild
from ..db import is_sqlite, transaction
from ..enums import Priority, Role, StageKind, TimelineKind
from ..errors import CrmError, NotFound, ValidationError
from ..rules.funnel import Actor
from ..models import Contact, ContactPhone, Deal, Pipeline, StageHistory, TimelineEntry, User

# A typical seller funnel, shared with the demo.
SELLER_FUNNEL = pipelines.SELLER_FUNNEL

CONTACT_CHUNK = 10_000
DEAL_CHUNK = 5_000
SQLITE_CACHE_KB = 64 * 1024
SELLER_LOGIN = "seller{:03d}"
SELLER_TEAM = "synthetic"

_ADMIN = Actor.system("cli")

# --- the words synthetic rows are made of --------------------------------------------------

_FIRST_NAMES = ("Agus", "Ahmad", "Andi", "Ani", "Bambang", "Budi", "Citra", "Dedi", "Dewi",
                "Dian", "Eko", "Fajar", "Fitri", "Gita", "Hadi", "Hendra", "Indah", "Joko",
                "Kartika", "Lestari", "Made", "Maya", "Nur", "Putri", "Rina", "Rudi", "Sari",
                "Siti", "Teguh", "Wahyu", "Wayan", "Yanti", "Yusuf")
_LAST_NAMES = ("Santoso", "Wijaya", "Kusuma", "Saputra", "Hidayat", "Pratama", "Setiawan",
               "Nugroho", "Lestari", "Susanto", "Gunawan", "Siregar", "Nasution", "Simanjuntak",
               "Halim", "Tanoto", "Putra", "Rahmawati", "Utami", "Wibowo")
_COMPANY_FORMS = ("PT", "PT", "PT", "CV")
_COMPANY_WORDS = ("Sinar", "Maju", "Jaya", "Abadi", "Mandiri", "Sentosa", "Nusantara",
                  "Karya", "Makmur", "Sejahtera", "Bintang", "Mitra", "Prima", "Global",
                  "Cahaya", "Indo", "Teknik", "Logistik", "Niaga", "Utama")
_PRODUCTS = ("Cloud PBX", "SIP trunk", "IP phones", "Call-centre seats", "Call recording",
             "CRM licences", "Support contract", "Network cabling", "Video conferencing",
             "Headsets", "Hotel PBX integration", "IVR menu")
_LOST_REASONS = ("Price too high", "Chose a competitor", "No budget this year",
                 "Project postponed", "No answer after proposal", "Went with the incumbent")
_AMOUNTS_MAJOR = (2_500_000, 5_000_000, 7_500_000, 12_500_000, 18_000_000, 25_000_000,
                  40_000_000, 65_000_000, 120_000_000, 250_000_000)

# --- phone numbers --------------------------------------------------------------------------

# Indonesian mobile prefixes (after +62) that take eight more digits; checked in the tests.
_ID_MOBILE_PREFIXES = ("811", "812", "813", "821", "822", "823", "852", "853", "857", "858")
# A prime other than 2 and 5, so coprime with every capacity below (a power of ten):
# x -> (A * x + B) mod capacity is then a bijection.
_SCRAMBLE = 1_000_003


@dataclass(frozen=True)
class _NumberPlan:
    """Valid numbers of one region: a country code, prefixes, and ``digits`` free digits."""

    country_code: int
    prefixes: tuple[str, ...]
    digits: int

    @property
    def capacity(self) -> int:
        return len(self.prefixes) * 10 ** self.digits

    def number(self, x: int) -> str:
        """The x-th number, scrambled so neighbours do not look alike; distinct x, distinct
        numbers (a bijection on 0..capacity-1)."""
        n = (x * _SCRAMBLE + 7_654_321) % self.capacity
        prefix, rest = divmod(n, 10 ** self.digits)
        return f"+{self.country_code}{self.prefixes[prefix]}{rest:0{self.digits}d}"


def _number_plan(region: str) -> _NumberPlan:
    if region == "ID":
        return _NumberPlan(62, _ID_MOBILE_PREFIXES, 8)
    example = (phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
               or phonenumbers.example_number(region))
    if example is None:
        raise ValidationError(f"No example phone number is known for region {region}.")
    national = str(example.national_number)
    check = random.Random(region)
    # The widest free tail whose numbers all stay valid in a sample.
    for digits in range(min(7, len(national) - 2), 2, -1):
        plan = _NumberPlan(example.country_code, (national[:-digits],), digits)
        sample = (plan.number(check.randrange(plan.capacity)) for _ in range(200))
        if all(phonenumbers.is_valid_number(phonenumbers.parse(e164)) for e164 in sample):
            return plan
    raise ValidationError(f"Cannot make up valid phone numbers for region {region}.")


# --- the report -----------------------------------------------------------------------------


@dataclass
class SeedReport:
    pipeline_id: int
    pipeline_name: str
    pipeline_created: bool
    sellers: int
    sellers_created: int
    # The password of the seller accounts made by this run (None when all existed already).
    seller_password: str | None
    contacts: int
    phones: int
    deals: int
    history_rows: int
    random_seed: int
    seconds: float = 0.0


# --- the pipeline and the sellers (through the services, or nearly) --------------------------


@dataclass(frozen=True)
class _Funnel:
    """What a deal needs of its pipeline: the possible paths to each stage, and the weights."""

    pipeline_id: int
    currency: str
    unsorted: int
    targets: tuple[int, ...]  # every stage, in board order
    cum_weights: tuple[float, ...]
    # Per target stage, the paths a deal may have taken to it, not counting Unsorted.
    paths: dict[int, tuple[tuple[int, ...], ...]]
    lost: frozenset[int]
    closed: frozenset[int]
    # The timeline text and data of each creation (None, stage) and move (from, to).
    bodies: dict[tuple[int | None, int], tuple[str, str]]


def _funnel(session, pipeline: Pipeline) -> _Funnel:
    stages = pipelines.stages_of(session, pipeline.id)
    unsorted = next(s.id for s in stages if s.is_unsorted)
    work = tuple(s.id for s in stages if s.kind == StageKind.OPEN.value and not s.is_unsorted)
    won = tuple(s.id for s in stages if s.kind == StageKind.WON.value)
    lost = tuple(s.id for s in stages if s.kind == StageKind.LOST.value)
    if not work or not won or not lost:
        raise ValidationError(f"Pipeline “{pipeline.name}” needs working, won and lost "
                              "stages to be seeded.")
    paths = {unsorted: ((),)}
    paths.update({stage_id: (work[:i + 1],) for i, stage_id in enumerate(work)})
    paths.update({stage_id: ((*work, stage_id),) for stage_id in won})
    # A lost deal fell out of any working stage.
    paths.update({stage_id: tuple((*work[:i + 1], stage_id) for i in range(len(work)))
                  for stage_id in lost})
    # Weighted toward the early stages, as a real funnel narrows.
    weights = {unsorted: 0.05}
    weights.update({stage_id: 0.2 * 0.75 ** i for i, stage_id in enumerate(work)})
    weights.update({stage_id: 0.15 / len(won) for stage_id in won})
    weights.update({stage_id: 0.2 / len(lost) for stage_id in lost})
    targets = tuple(s.id for s in stages)
    names = {s.id: s.name for s in stages}
    # The same text and JSON the services write (json.dumps' default separators).
    bodies = {(None, s.id): (f"Deal created in {s.name}", f'{{"stage_id": {s.id}}}')
              for s in stages}
    bodies.update({(a, b): (f"{names[a]} → {names[b]}",
                            f'{{"from_stage_id": {a}, "to_stage_id": {b}}}')
                   for a in targets for b in targets if a != b})
    return _Funnel(pipeline.id, pipeline.currency, unsorted, targets,
                   tuple(itertools.accumulate(weights[t] for t in targets)), paths,
                   frozenset(lost), frozenset(won + lost), bodies)


def _ensure_pipeline(session, name: str, currency: str) -> tuple[Pipeline, bool]:
    try:
        return pipelines.find_pipeline(session, name), False
    except NotFound:
        return pipelines.create_pipeline(session, _ADMIN, name=name, stages=SELLER_FUNNEL,
                                         currency=currency), True


def _ensure_sellers(session, count: int, now: datetime) -> tuple[list[int], int, str | None]:
    """The synthetic sellers seller001..; missing ones share one password, hashed once
    (Argon2 takes tens of milliseconds on purpose, per hash)."""
    logins = [SELLER_LOGIN.format(i) for i in range(1, count + 1)]

    def ids() -> dict[str, int]:
        return dict(session.execute(select(User.login, User.id)
                                    .where(User.login.in_(logins))).all())

    existing = ids()
    missing = [login for login in logins if login not in existing]
    password = None
    if missing:
        password = secrets.token_urlsafe(12)
        password_hash = PasswordHasher().hash(password)
        names = random.Random(count)
        session.execute(insert(User.__table__), [
            {"login": login,
             "name": f"{names.choice(_FIRST_NAMES)} {names.choice(_LAST_NAMES)}",
             "password_hash": password_hash, "role": Role.SELLER.value, "active": True,
             "team": SELLER_TEAM, "language": "en", "created_at": now}
            for login in missing])
        existing = ids()
    return [existing[login] for login in logins], len(missing), password


# --- writing in bulk --------------------------------------------------------------------------


class _Bulk:
    """Rows handed straight to the driver's executemany, one chunk at a time.

    At this volume SQLAlchemy's per-value type processing costs more than the database's own
    work, so values are prepared here in exactly the form SQLAlchemy stores them: timestamps
    as UTC text with microseconds on SQLite (the string order is the time order the board
    relies on), aware datetimes on PostgreSQL; JSON as json.dumps text. PostgreSQL gets the
    rows through COPY.
    """

    def __init__(self, connection: Connection):
        self.connection = connection
        self.sqlite = connection.dialect.name == "sqlite"

    def at(self, epoch: int):
        if self.sqlite:
            return (_EPOCH_NAIVE + timedelta(seconds=epoch)).isoformat(" ", "microseconds")
        return _EPOCH + timedelta(seconds=epoch)

    def insert(self, table, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        names = ", ".join(columns)
        if self.sqlite:
            marks = ", ".join("?" for _ in columns)
            self.connection.exec_driver_sql(
                f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', rows)
            return
        # COPY: several times faster than even a pipelined executemany on PostgreSQL.
        with self.connection.connection.driver_connection.cursor() as cursor, \
                cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)

    def reserve_ids(self, table) -> int:
        """The highest id ``table`` has used, with other writers held off until the chunk
        commits; the chunk then writes the ids after it explicitly.

        Explicit ids let a chunk's deals and their history go in without a round trip per
        row. An id is never handed out twice, even after deletions: the sequence (PostgreSQL)
        or sqlite_sequence (SQLite AUTOINCREMENT tables) counts as used. SQLite's BEGIN
        IMMEDIATE holds the write lock already; PostgreSQL takes a table lock, and
        ``advance_sequence`` moves the sequence past the new ids.
        """
        name, run = table.name, self.connection.exec_driver_sql
        if self.sqlite:
            has_sequences = run("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
            used = (run("SELECT seq FROM sqlite_sequence WHERE name = ?", (name,)).scalar()
                    if has_sequences.first() else None)
        else:
            run(f'LOCK TABLE "{name}" IN SHARE ROW EXCLUSIVE MODE')
            used = run(f"SELECT pg_sequence_last_value(pg_get_serial_sequence('{name}', 'id'))"
                       ).scalar()
        top = self.connection.execute(select(func.coalesce(func.max(table.c.id), 0)))
        return max(top.scalar_one(), used or 0)

    def advance_sequence(self, table, last_id: int) -> None:
        if not self.sqlite:
            self.connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), {int(last_id)})")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_CONTACT_COLUMNS = ("id", "name", "company", "email", "owner_id", "created_at", "updated_at")
_PHONE_COLUMNS = ("contact_id", "raw", "e164", "label")
_DEAL_COLUMNS = ("id", "pipeline_id", "stage_id", "title", "amount_minor", "currency",
                 "contact_id", "owner_id", "priority", "source", "created_by_id", "created_at",
                 "updated_at", "stage_entered_at", "last_activity_at", "closed_at",
                 "lost_reason", "version")
_HISTORY_COLUMNS = ("deal_id", "pipeline_id", "from_stage_id", "to_stage_id",
                    "from_entered_at", "moved_at", "moved_by_id")
_TIMELINE_COLUMNS = ("deal_id", "kind", "created_at", "author_id", "body", "data")


@contextmanager
def _bulk_writer(engine: Engine):
    """Yields ``chunk()``, the unit of work for one chunk of rows.

    On SQLite every chunk shares one transaction: its write lock is exclusive anyway, and
    committing per chunk would copy the same index pages through the WAL again and again
    (a third of the run). On PostgreSQL each chunk commits, so a million deals do not hold
    the table locks, or lose everything to one bad row, for minutes.
    """
    if is_sqlite(engine):
        with transaction(engine) as session:
            connection = session.connection()
            # Room for the indexes being filled (the default cache is 2 MB); given back after.
            connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KB}")
            try:
                bulk = _Bulk(connection)
                yield lambda: nullcontext(bulk)
            finally:
                connection.exec_driver_sql("PRAGMA cache_size=-2000")
        return

    @contextmanager
    def chunk():
        with transaction(engine) as session:
            connection = session.connection()
            _skip_foreign_key_triggers(connection)
            yield _Bulk(connection)

    yield chunk


def _skip_foreign_key_triggers(connection: Connection) -> None:
    """Spare PostgreSQL its per-row foreign-key triggers, where the role may do so.

    They cost nine tenths of the time of a chunk, and the generator's rows refer only to rows
    it has just written or read (the tests check the result with the keys enforced, on SQLite).
    ``SET LOCAL`` ends with the chunk's transaction; a role without the right keeps the checks.
    """
    savepoint = connection.begin_nested()
    try:
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
    except DBAPIError:
        savepoint.rollback()
    else:
        savepoint.commit()


def _chunks(total: int, size: int):
    for start in range(0, total, size):
        yield min(size, total - start)


# --- the generator ------------------------------------------------------------------------------


def seed_synthetic(engine: Engine, *, deals: int, contacts: int, sellers: int, region: str,
                   pipeline_name: str = "Sales", random_seed: int | None = None,
                   currency: str = "IDR", now: datetime | None = None,
                   progress: Callable[[int], object] | None = None,
                   detour_rate: float = 0.0, time_zone: str | None = None) -> SeedReport:
    """Add ``contacts`` contacts and ``deals`` deals to ``pipeline_name`` (created with the
    seller funnel if absent), owned by ``sellers`` synthetic sellers (created if absent).

    Runs again add more. ``progress(n)`` is called as rows are written: contacts, then deals.
    ``detour_rate``: the chance that a deal went back one working stage and forward again
    (repeated with the same chance), as a redone proposal does; 0 keeps every path straight.
    ``time_zone``: the company's, which the reports' daily tables are left counting days in
    (recounted whole if they counted another); None: the zone they count in (the default
    when none).
    """
    if not 0 <= detour_rate < 1:
        raise ValidationError("The detour rate is at least 0 and below 1.")
    if deals < 0 or contacts < 0 or sellers < 0:
        raise ValidationError("Counts cannot be negative.")
    if deals and sellers < 1:
        raise ValidationError("Seeding deals needs at least one seller.")
    started = time.perf_counter()
    random_seed = secrets.randbelow(2**31) if random_seed is None else random_seed
    rng = random.Random(random_seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    now_epoch = int(now.timestamp())

    with transaction(engine) as session:
        pipeline, pipeline_created = _ensure_pipeline(session, pipeline_name, currency)
        funnel = _funnel(session, pipeline)
        seller_ids, sellers_created, password = _ensure_sellers(session, sellers, now)
    report = SeedReport(pipeline.id, pipeline.name, pipeline_created, len(seller_ids),
                        sellers_created, password, 0, 0, 0, 0, random_seed)

    with _bulk_writer(engine) as chunk:
        contact_refs = _seed_contacts(chunk, report, rng, contacts, seller_ids, region,
                                      now_epoch, progress)
        _seed_deals(chunk, report, rng, deals, funnel, seller_ids, contact_refs, now_epoch,
                    progress, detour_rate)
    if deals:
        # The seeded history, counted per day in bulk for the reports (in the company's zone;
        # every pipeline's, if the tables counted another), and the seeded deals counted per
        # column for the board.
        with transaction(engine) as session:
            stage_totals.rebuild(session, pipeline_id=pipeline.id)
            days_rebuild.rebuild(session, pipeline_id=pipeline.id,
                                 time_zone=time_zone or report_days.day_zone(session)
                                 or report_days.DEFAULT_TIME_ZONE)
    report.seconds = time.perf_counter() - started
    return report


def _seed_contacts(chunk, report: SeedReport, rng: random.Random, count: int,
                   seller_ids: list[int], region: str, now: int,
                   progress) -> list[tuple[int, str]]:
    """Write the contacts and their phones; return what a deal needs of them: (id, company),
    small beside the deals themselves."""
    plan = _number_plan(region.upper()) if count else None
    contact_refs: list[tuple[int, str]] = []
    for size in _chunks(count, CONTACT_CHUNK):
        with chunk() as bulk:
            first_id = bulk.reserve_ids(Contact.__table__) + 1
            if 2 * (first_id + size) >= plan.capacity:
                raise CrmError(f"Region {region} leaves room for about "
                               f"{plan.capacity // 2:,} synthetic contacts; seed fewer.")
            rows, phones = _contact_rows(rng, bulk, first_id, size, seller_ids, plan, now)
            bulk.insert(Contact.__table__, _CONTACT_COLUMNS, rows)
            bulk.insert(ContactPhone.__table__, _PHONE_COLUMNS, phones)
            bulk.advance_sequence(Contact.__table__, first_id + size - 1)
        contact_refs += ((row[0], row[2]) for row in rows)
        report.contacts += size
        report.phones += len(phones)
        if progress:
            progress(size)
    return contact_refs


def _seed_deals(chunk, report: SeedReport, rng: random.Random, count: int, funnel: _Funnel,
                seller_ids: list[int], contact_refs: list[tuple[int, str]], now: int,
                progress, detour_rate: float = 0.0) -> None:
    for size in _chunks(count, DEAL_CHUNK):
        with chunk() as bulk:
            first_id = bulk.reserve_ids(Deal.__table__) + 1
            rows, history, entries = _deal_rows(rng, bulk, first_id, size, funnel, seller_ids,
                                                contact_refs, now, detour_rate)
            bulk.insert(Deal.__table__, _DEAL_COLUMNS, rows)
            bulk.insert(StageHistory.__table__, _HISTORY_COLUMNS, history)
            bulk.insert(TimelineEntry.__table__, _TIMELINE_COLUMNS, entries)
            bulk.advance_sequence(Deal.__table__, first_id + size - 1)
        report.deals += size
        report.history_rows += len(history)
        if progress:
            progress(size)


_YEAR = 365 * 86400
_MEAN_GAP = 6 * 86400.0  # between two moves of a deal, on average


def _contact_rows(rng: random.Random, bulk: _Bulk, first_id: int, size: int,
                  seller_ids: list[int], plan: _NumberPlan,
                  now: int) -> tuple[list[tuple], list[tuple]]:
    rows, phones = [], []
    choice, rand = rng.choice, rng.random
    for contact_id in range(first_id, first_id + size):
        first, last = choice(_FIRST_NAMES), choice(_LAST_NAMES)
        company = f"{choice(_COMPANY_FORMS)} {choice(_COMPANY_WORDS)} {choice(_COMPANY_WORDS)}"
        created = bulk.at(now - int(rand() * _YEAR))
        rows.append((contact_id, f"{first} {last}", company,
                     f"{first.lower()}.{last.lower()}{contact_id}@example.co.id",
                     choice(seller_ids) if seller_ids else None, created, created))
        # Numbers follow from the contact id: unique across every seed run on this database.
        e164 = plan.number(2 * contact_id)
        phones.append((contact_id, e164, e164, "mobile"))
        if rand() < 0.35:
            e164 = plan.number(2 * contact_id + 1)
            phones.append((contact_id, e164, e164, "work"))
    return rows, phones


def _deal_rows(rng: random.Random, bulk: _Bulk, first_id: int, size: int, funnel: _Funnel,
               seller_ids: list[int], contact_refs: list[tuple[int, str]],
               now: int, detour_rate: float = 0.0) -> tuple[list[tuple], list[tuple], list[tuple]]:
    rows, history, entries = [], [], []
    choice, rand, expovariate = rng.choice, rng.random, rng.expovariate
    targets, cum_weights, total = funnel.targets, funnel.cum_weights, funnel.cum_weights[-1]
    unsorted, pipeline_id, bodies = funnel.unsorted, funnel.pipeline_id, funnel.bodies
    created_kind, move_kind = TimelineKind.CREATED.value, TimelineKind.STAGE_MOVE.value
    for deal_id in range(first_id, first_id + size):
        target = targets[bisect.bisect(cum_weights, rand() * total)]
        from_call = target == unsorted or rand() < 0.3
        path = choice(funnel.paths[target])
        if from_call:
            path = (unsorted, *path)
        # Detours draw from the generator only when asked for: the same seed, the same data.
        while detour_rate and rand() < detour_rate:
            spots = [k for k in range(1, len(path))
                     if path[k - 1] not in funnel.closed and path[k - 1] != unsorted
                     and path[k] not in funnel.closed]
            if not spots:
                break
            k = choice(spots)
            path = (*path[:k + 1], path[k - 1], path[k], *path[k + 1:])
        owner = None if target == unsorted else choice(seller_ids)
        source = ("call" if from_call else "popup" if rand() < 0.15 else "manual")

        created = now - 1 - int(rand() * _YEAR)
        epochs = [created]
        if len(path) > 1:
            gaps = [expovariate(1 / _MEAN_GAP) for _ in path[1:]]
            scale = min(1.0, 0.95 * (now - created) / sum(gaps))
            for gap in gaps:
                epochs.append(epochs[-1] + int(gap * scale))
        at = [bulk.at(epoch) for epoch in epochs]
        last = at[-1]

        if contact_refs:
            contact_id, company = choice(contact_refs)
        else:
            contact_id, company = None, f"customer #{deal_id}"
        reason = choice(_LOST_REASONS) if target in funnel.lost else None
        priority = (Priority.NORMAL.value if owner is None or rand() < 0.7
                    else Priority.HIGH.value if rand() < 0.5 else Priority.LOW.value)
        rows.append((deal_id, pipeline_id, target, f"{choice(_PRODUCTS)} for {company}",
                     choice(_AMOUNTS_MAJOR) * 100, funnel.currency, contact_id, owner, priority,
                     source, None if from_call else owner, at[0], last, last, last,
                     last if target in funnel.closed else None, reason, len(path)))

        # What the services record: a creation row from no stage, then one row per move, each
        # with its timeline entry. The PBX creates call deals; people create the others.
        creator = None if from_call else owner
        body, data = bodies[None, path[0]]
        history.append((deal_id, pipeline_id, None, path[0], None, at[0], creator))
        entries.append((deal_id, created_kind, at[0], creator, body, data))
        for i in range(1, len(path)):
            body, data = bodies[path[i - 1], path[i]]
            if reason and i == len(path) - 1:
                body = f"{body}: {reason}"
            history.append((deal_id, pipeline_id, path[i - 1], path[i], at[i - 1], at[i],
                            owner))
            entries.append((deal_id, move_kind, at[i], owner, body, data))
    return rows, history, entries
