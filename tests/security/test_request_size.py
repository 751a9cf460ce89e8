"""A large body never holds a web worker: it is refused (413) before it is read, by its declared
length, and a chunked one as soon as it passes the cap. Measured against `pbx-crm web` as it
runs in production (gunicorn, gevent workers; one worker here, so a stall would show), and on
both databases; a user who sends too much gets the refusal in their language.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from factories import make_deal, make_pipeline, make_user
from gunicorn_server import pbx_crm_web
from pbx_crm.db import transaction
from webtools import signed_in

HUGE = 100 * 1024 * 1024
MULTIPART = "multipart/form-data; boundary=x"


def send_head(port: int, path: str, headers: dict) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in
                                                           headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def answer_of(sock: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """What the server sent before it closed the connection, and whether it closed it, by the
    deadline (time.monotonic())."""
    received = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            piece = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            return received, False
        except ConnectionResetError:
            return received, True
        if not piece:
            return received, True
        received += piece


@pytest.fixture
def server(engine, tmp_path):
    with pbx_crm_web(engine, tmp_path, workers=1) as port:
        yield port


def test_a_huge_body_is_refused_at_once_and_never_read(server):
    started = time.monotonic()
    with send_head(server, "/login", {"Content-Type": MULTIPART,
                                      "Content-Length": HUGE}) as sock:
        sock.sendall(b"--x\r\n" + b"a" * 65536)  # a first piece; the rest never comes
        answer, closed = answer_of(sock, started + 2.0)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"at most 256 KB" in answer
    # Answered and hung up without waiting for the other 99.9 MB.
    assert closed and elapsed < 1.0, f"{elapsed:.3f} s"


def test_a_chunked_body_is_refused_once_it_passes_the_cap(server):
    started = time.monotonic()
    with send_head(server, "/login", {"Content-Type": "application/x-www-form-urlencoded",
                                      "Transfer-Encoding": "chunked"}) as sock:
        piece = b"a" * 65536
        for _ in range(300 * 1024 // len(piece) + 1):  # past 256 KB, and never a last chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        answer, closed = answer_of(sock, started + 2.0)
    assert answer.startswith(b"HTTP/1.1 413 ") and closed


def health_check(port: int) -> float:
    """Seconds until ``GET /healthz`` was answered."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer, _ = answer_of(sock, started + 10.0)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok")
    return time.monotonic() - started


def test_health_checks_are_answered_quickly_while_big_uploads_stream(server):
    # The worker's first requests load what it loads lazily: not what is measured here.
    health_check(server)
    with send_head(server, "/login", {"Content-Type": MULTIPART, "Content-Length": HUGE}) as sock:
        assert answer_of(sock, time.monotonic() + 5.0)[0].startswith(b"HTTP/1.1 413 ")
    stop = threading.Event()
    uploads = [0]

    def upload_forever():
        piece = b"a" * 65536
        while not stop.is_set():
            try:
                with send_head(server, "/login", {"Content-Type": MULTIPART,
                                                  "Content-Length": 50 * 1024 * 1024}) as sock:
                    for _ in range(50 * 16):
                        if stop.is_set():
                            break
                        sock.sendall(piece)
            except OSError:
                pass  # refused and hung up on: start the next one
            uploads[0] += 1

    uploaders = [threading.Thread(target=upload_forever) for _ in range(4)]
    for uploader in uploaders:
        uploader.start()
    waits = []
    try:
        for _ in range(20):
            waits.append(health_check(server))
    finally:
        stop.set()
        for uploader in uploaders:
            uploader.join(10)
    assert uploads[0] >= 4
    assert max(waits) < 0.25, f"health checks waited {[round(w, 3) for w in waits]} s"


# --- what a user meets -----------------------------------------------------------------------


@pytest.fixture
def ana_and_her_deal(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        return make_deal(session, ana, title="Website redesign")


def test_the_longest_note_the_form_allows_fits_under_the_cap(web, ana_and_her_deal):
    # 10,000 characters, each four bytes of UTF-8 and twelve once URL-encoded: about 120 KB.
    client = signed_in(web, "ana")
    answer = client.post(f"/deals/{ana_and_her_deal.id}/notes", {"body": "🙂" * 10_000})
    assert answer.status == 303


def test_a_note_too_large_to_send_is_refused_in_the_users_language(web, ana_and_her_deal):
    client = signed_in(web, "ana")
    assert client.post("/settings/language", {"language": "id"}).status == 303
    answer = client.post(f"/deals/{ana_and_her_deal.id}/notes", {"body": "a" * 300_000})
    assert answer.status == 413
    assert "Ini terlalu besar untuk dikirim: paling banyak 256 KB sekaligus." in answer.text
    # The connection was read to its end: the next request on a new page works as ever.
    assert client.get(f"/deals/{ana_and_her_deal.id}").status == 200
