"""Benchmark: AMI events per second, ours against pyst2, on the same recorded bytes.

The payload is the recorded Asterisk 22 streams (tests/fixtures/asterisk-captures/ami), the
events a session logged in with ``Events: call,user,cdr`` receives, concatenated ``--repeat``
times with the uniqueids shifted on each pass so every pass is a new set of calls. A loopback
server thread sends it over TCP on 127.0.0.1 right after the login. Measured, each from connect
to the last event:

  * ours, reader + tracker: ``AmiReader`` (64 KB reads) feeding ``CallTracker`` in one thread;
  * ours, whole client: ``AmiClient`` (reader thread, queue, dispatcher thread) with the
    tracker in ``on_event``, as the AMI listener runs it;
  * pyst2 0.5.1 ``asterisk.manager.Manager``: its reader (one byte per recv system call) and
    dispatcher, counting events in a ``'*'`` callback. It is slow, so it gets fewer passes
    (``--pyst2-repeat``); the figures are rates.

    python bench/ami_events.py                  # defaults: 200 passes, pyst2 10 passes
    python bench/ami_events.py --events all     # the whole stream, dialplan and agi included
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
import threading
import time
import warnings
from pathlib import Path

from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.ami_protocol import AmiReader, format_message, split_stream
from pbx_crm.telephony.call_tracker import CallTracker

CAPTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "asterisk-captures" / "ami"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
_PRIVILEGE = re.compile(rb"\nPrivilege: ([^\r\n]*)")
_EPOCH = re.compile(rb"1795892")  # every uniqueid of the captures starts with it


def one_pass(classes: set[str] | None) -> list[bytes]:
    """Every capture's events (no responses, no list answers), filtered by event class."""
    blocks = []
    for path in sorted(CAPTURES.glob("*.ami.raw")):
        for block in split_stream(path.read_bytes())[1]:
            privilege = _PRIVILEGE.search(block)
            if not block.startswith(b"Event: ") or privilege is None:
                continue
            if classes is None or classes & set(privilege[1].decode().split(",")):
                blocks.append(block)
    return blocks


def payload(blocks: list[bytes], repeat: int) -> bytes:
    one = b"".join(blocks)
    return b"".join(_EPOCH.sub(str(1795892 + n).encode(), one) for n in range(repeat))


class StreamServer:
    """Accepts one connection, sends the banner, answers a Login if one comes (pyst2 sends
    none), then sends the whole payload and closes."""

    def __init__(self, data: bytes, expect_login: bool):
        self.data, self.expect_login = data, expect_login
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def _serve(self) -> None:
        sock, _ = self.listener.accept()
        self.listener.close()
        sock.sendall(BANNER)
        if self.expect_login:
            login = AmiReader.from_socket(sock).read_message()
            sock.sendall(format_message([("Response", "Success"), ("ActionID", login.action_id),
                                         ("Message", "Authentication accepted")]))
        sock.sendall(self.data)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # until the client closes
        sock.close()


def bench_reader(data: bytes) -> tuple[int, float]:
    server = StreamServer(data, expect_login=False)
    tracker = CallTracker()
    started = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", server.port))
    reader = AmiReader.from_socket(sock)
    reader.read_banner()
    count = 0
    for message in reader:
        tracker.feed(message)
        count += 1
    elapsed = time.perf_counter() - started
    sock.close()
    assert tracker.open_calls == (), tracker.open_calls
    return count, elapsed


def bench_client(data: bytes, expected: int) -> tuple[int, float]:
    server = StreamServer(data, expect_login=True)
    tracker = CallTracker()
    done = threading.Event()
    count = 0

    def on_event(message):
        nonlocal count
        tracker.feed(message)
        count += 1
        if count == expected:
            done.set()

    started = time.perf_counter()
    client = AmiClient("127.0.0.1", server.port, "bench", "bench", on_event=on_event,
                       ping_interval=3600, reconnect_delay=3600).start()
    assert done.wait(600), f"only {count} of {expected} events"
    elapsed = time.perf_counter() - started
    client.close(timeout=1)
    return count, elapsed


def bench_pyst2(data: bytes) -> tuple[int, float]:
    warnings.simplefilter("ignore", DeprecationWarning)  # setDaemon, isSet on 3.11
    from asterisk.manager import Manager

    server = StreamServer(data, expect_login=False)
    count = 0

    def on_any(event, manager):
        nonlocal count
        count += 1

    manager = Manager()
    manager.register_event("*", on_any)
    started = time.perf_counter()
    manager.connect("127.0.0.1", server.port)
    manager.event_dispatch_thread.join()  # ends at EOF
    elapsed = time.perf_counter() - started
    return count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="passes for our reader")
    parser.add_argument("--pyst2-repeat", type=int, default=10, help="passes for pyst2")
    parser.add_argument("--events", default="call,user,cdr",
                        help="event classes in the payload, or 'all' (default: call,user,cdr)")
    args = parser.parse_args()
    logging.getLogger("pbx_crm.telephony.ami_client").setLevel(logging.ERROR)  # the server hangs up at the end
    classes = None if args.events == "all" else set(args.events.split(","))
    blocks = one_pass(classes)
    ours, theirs = payload(blocks, args.repeat), payload(blocks, args.pyst2_repeat)
    print(f"payload: {len(blocks)} events per pass ({args.events}), "
          f"{len(ours) / 1e6:.1f} MB for {args.repeat} passes")

    results = {}
    for name, run in (("ours: AmiReader + CallTracker", lambda: bench_reader(ours)),
                      ("ours: AmiClient + CallTracker", lambda: bench_client(
                          ours, len(blocks) * args.repeat)),
                      ("pyst2 0.5.1 Manager", lambda: bench_pyst2(theirs))):
        count, elapsed = run()
        results[name] = count / elapsed
        print(f"{name:32s} {count:8d} events in {elapsed:6.2f} s = {count / elapsed:9,.0f} events/s")
    pyst2 = results["pyst2 0.5.1 Manager"]
    for name in list(results)[:2]:
        print(f"ratio {name} / pyst2: {results[name] / pyst2:.1f}x")


if __name__ == "__main__":
    main()
