"""`pbx-crm web` as it runs in production: gunicorn with gevent workers, in a process of its
own, on both databases. The test waits on the server's socket, then signs in and reads the
board over HTTP."""

from __future__ import annotations

from factories import PASSWORD, make_deal, make_pipeline, make_user
from gunicorn_server import pbx_crm_web
from pbx_crm.db import transaction
from webtools import Client


def test_pbx_crm_web_serves_the_board_with_gevent_workers(engine, tmp_path):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana")
        make_deal(session, ana, title="Website redesign")
    with pbx_crm_web(engine, tmp_path) as port:
        client = Client(f"http://127.0.0.1:{port}")
        assert client.sign_in("ana", PASSWORD).status == 303
        # Several requests: whichever worker answers knows the session (it is in the database).
        for _ in range(4):
            board = client.get("/board")
            assert board.status == 200 and "Website redesign" in board.text
    output = (tmp_path / f"web-{port}.log").read_text()
    assert "Using worker: gevent" in output
    assert "Booting worker" in output
