"""Benchmark: the board page's server time, through the whole web app, on a large pipeline.

Calls the WSGI app the way gunicorn does (no network), signed in as a head and as a seller,
and times a full ``GET /board`` (session lookup, the column pages as rows, the totals, the
template), against a trivial route (``/healthz``) measured in the same run as the baseline.
The column totals are read from ``stage_totals`` (kept by the deal services); the same
totals counted over the deals, as the board did before, are timed beside them.

    python bench/board_render.py                       # SQLite, 100k deals
    python bench/board_render.py --database-url postgresql+psycopg://.../pbx_crm_bench \\
        --deals 1000000

The database is seeded on first use (the same data as ``bench/board_queries.py``).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import argon2
from sqlalchemy import func, text
from sqlmodel import select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from board_queries import PIPELINE, ensure_data, percentile, timed  # noqa: E402
from pbx_crm.web.server import keep_startup_objects_out_of_gc  # noqa: E402
from pbx_crm.webui import create_app  # noqa: E402

from pbx_crm.funnel import board, pipelines
from pbx_crm.people import users, sign_in as web_sessions  # noqa: E402
from pbx_crm.config import Settings  # noqa: E402
from pbx_crm.db import make_engine, transaction  # noqa: E402
from pbx_crm.rules.funnel import Actor  # noqa: E402
from pbx_crm.models import Deal, User  # noqa: E402

HEAD_LOGIN = "bench-head"
GOAL_P95_MS = 50.0
# Search terms of different selectivity in the seeded data (names and titles are drawn from
# small word lists): a first name on about 3% of the deals' contacts, a full name on about
# 0.15%, three letters in about 14% of the titles and names, and two letters, too short for
# a trigram index (read by a scan).
SEARCHES = (("by name (budi)", "budi"), ("rare (budi wibowo)", "budi wibowo"),
            ("common (jay)", "jay"), ("2 letters (bu)", "bu"))


def sign_in(engine, role: str) -> str:
    """A session cookie for a head (made once) or the first seeded seller."""
    with transaction(engine) as session:
        if role == "head":
            user = session.exec(select(User).where(User.login == HEAD_LOGIN)).first()
            if user is None:
                users.use_password_profile(argon2.profiles.CHEAPEST)
                user = users.create_user(session, Actor.system("bench"), login=HEAD_LOGIN,
                                         name="Bench head", password="bench-head-password",
                                         role="head")
        else:
            user = session.exec(select(User).where(User.role == "seller")
                                .order_by(User.id)).first()
        return web_sessions.open_session(session, user)


def wsgi_get(app, path: str, cookie: str):
    def call():
        status = []
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path.partition("?")[0],
                   "QUERY_STRING": path.partition("?")[2], "SERVER_NAME": "bench",
                   "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
                   "wsgi.errors": sys.stderr, "HTTP_COOKIE": f"pbx_crm_session={cookie}",
                   "REMOTE_ADDR": "127.0.0.1"}
        body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
        if not status[0].startswith("200"):
            raise SystemExit(f"{path}: {status[0]}")
        return body
    return call


def totals_read(engine, pipeline_id: int, *, kept: bool):
    """A head's column totals alone: read from ``stage_totals``, or counted over the deals
    (the query the board ran on every load before the totals were kept)."""
    head = Actor.system("bench")
    counted = (select(Deal.stage_id, func.count(), func.coalesce(func.sum(Deal.amount_minor), 0))
               .where(Deal.pipeline_id == pipeline_id).group_by(Deal.stage_id))

    def call():
        with transaction(engine, read_only=True) as session:
            if kept:
                return board.column_totals(session, head, pipeline_id)
            return session.execute(counted).all()
    return call


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: an SQLite file in the temp directory")
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--search-repeat", type=int, default=20,
                        help="runs of each search (a 1-2 letter one is a scan: seconds each on a "
                        "large pipeline)")
    args = parser.parse_args(argv)
    url = args.database_url or \
        f"sqlite:///{Path(tempfile.gettempdir()) / f'pbx-crm-bench-{args.deals}.sqlite3'}"
    engine = make_engine(url)
    ensure_data(engine, args.deals)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE deals"))
    settings = Settings(database_url=url)
    head, seller = sign_in(engine, "head"), sign_in(engine, "seller")
    app = create_app(settings, engine)
    keep_startup_objects_out_of_gc()  # as each web worker does after loading the app
    page = wsgi_get(app, "/board", head)()
    cards = page.count(b'class="card ')
    with transaction(engine, read_only=True) as session:
        pipeline_id = pipelines.find_pipeline(session, PIPELINE).id
    cases = [
        ("baseline: GET /healthz", wsgi_get(app, "/healthz", head)),
        ("board, head", wsgi_get(app, "/board", head)),
        ("board, seller", wsgi_get(app, "/board", seller)),
        *[(f"search {name}, {who}", wsgi_get(app, "/board?" + urlencode({"q": q}), cookie))
          for name, q in SEARCHES for who, cookie in (("head", head), ("seller", seller))],
        ("totals, head: kept", totals_read(engine, pipeline_id, kept=True)),
        ("totals, head: counted", totals_read(engine, pipeline_id, kept=False)),
    ]
    results = [(name, timed(call, args.search_repeat if name.startswith("search")
                            else args.repeat)) for name, call in cases]
    baseline = statistics.median(results[0][1])
    # How many cards each search shows: the same before and after a change to how it reads.
    found = {name: call().count(b'class="card ') for name, call in cases
             if name.startswith("search")}
    print(f"{engine.dialect.name}, {args.deals:,} deals in “{PIPELINE}”, {args.repeat} runs "
          f"each ({args.search_repeat} of a search); the head's board shows {cards} cards")
    print(f"{'page':<38} {'p50 ms':>9} {'p95 ms':>9} {'p50 / baseline':>15}")
    for name, samples in results:
        p50, p95 = statistics.median(samples), percentile(samples, 0.95)
        mark = "" if name.startswith(("baseline", "search", "totals")) else \
            ("  ok" if p95 < GOAL_P95_MS else f"  over the {GOAL_P95_MS:g} ms goal")
        if name in found:
            mark = f"  {found[name]} cards"
        print(f"{name:<38} {p50:>9.3f} {p95:>9.3f} {p50 / baseline:>14.1f}x{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
