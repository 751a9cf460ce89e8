"""The durable spool on its own: a small SQLite file of AGI requests waiting for the database.

What the dispatcher relies on: requests come back in arrival order with what was put in, a
call's later requests can see that an earlier one waits, a request that keeps failing for a
reason other than the database is set aside (kept, never replayed), and an acknowledged put
survives the process.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pbx_crm.telephony.spool import MAX_ATTEMPTS, Spool

RANG_AT = datetime(2026, 11, 28, 19, 1, 28, 122000, tzinfo=UTC)


def env(uniqueid: str, script: str = "incoming") -> dict[str, str]:
    return {"agi_network": "yes", "agi_network_script": script, "agi_uniqueid": uniqueid,
            "agi_callerid": "+62 812-3456-7890", "agi_calleridname": 'Budi "Bos"\\',
            "agi_arg_1": "2150001", "agi_arg_2": uniqueid}


@pytest.fixture
def spool(tmp_path):
    spool = Spool(tmp_path / "data" / "spool.sqlite3")
    yield spool
    spool.close()


def put_call(spool, uniqueid, at=RANG_AT):
    """The three requests of one call, in the order the call makes them."""
    return [spool.put(hook, uniqueid, env(uniqueid, hook), at + timedelta(seconds=n), "budget")
            for n, hook in enumerate(("incoming", "answered", "hangup"))]


def test_requests_come_back_in_arrival_order_with_what_was_put_in(spool):
    first = put_call(spool, "1795892488.1")
    second = spool.put("incoming", "1795892488.5", env("1795892488.5"), RANG_AT,
                       "all database workers busy")

    pending = spool.pending()

    assert [r.id for r in pending] == [*first, second]
    assert [(r.hook, r.call_key) for r in pending] == [
        ("incoming", "1795892488.1"), ("answered", "1795892488.1"), ("hangup", "1795892488.1"),
        ("incoming", "1795892488.5")]
    assert pending[0].env == env("1795892488.1")  # the quote and backslash intact
    assert [r.received_at for r in pending[:3]] == [RANG_AT + timedelta(seconds=n)
                                                    for n in range(3)]
    assert (pending[3].attempts, pending[3].last_error) == (0, "all database workers busy")
    assert [r.id for r in spool.pending(limit=2)] == first[:2]
    assert spool.counts() == (4, 0)


def test_a_time_given_in_another_zone_comes_back_as_the_same_instant_in_utc(spool):
    jakarta = RANG_AT.astimezone(timezone(timedelta(hours=7)))
    spool.put("incoming", "1.1", env("1.1"), jakarta, "budget")

    received_at = spool.pending()[0].received_at

    assert received_at == RANG_AT and received_at.utcoffset() == timedelta(0)


def test_a_call_is_held_while_any_of_its_requests_waits(spool):
    ids = put_call(spool, "1795892488.1")

    assert spool.holds_call("1795892488.1") and not spool.holds_call("1795892488.9")
    spool.done(ids[0])
    spool.done(ids[1])
    assert spool.holds_call("1795892488.1")
    spool.done(ids[2])
    assert not spool.holds_call("1795892488.1")
    assert spool.pending() == [] and spool.counts() == (0, 0)


def test_a_database_failure_is_retried_for_ever_and_counted(spool):
    request_id, = [spool.put("incoming", "1.1", env("1.1"), RANG_AT, "budget")]

    for _ in range(MAX_ATTEMPTS * 2):
        spool.failed(request_id, "OperationalError('connection refused')", retryable=True)

    request, = spool.pending()
    assert (request.attempts, request.last_error) == (MAX_ATTEMPTS * 2,
                                                       "OperationalError('connection refused')")
    assert spool.counts() == (1, 0) and spool.holds_call("1.1")


def test_a_long_outage_does_not_use_up_the_attempts_for_other_faults(spool):
    request_id = spool.put("incoming", "1.1", env("1.1"), RANG_AT, "budget")
    for _ in range(MAX_ATTEMPTS * 3):
        spool.failed(request_id, "OperationalError('connection refused')", retryable=True)

    spool.failed(request_id, "IntegrityError('duplicate key')", retryable=False)

    assert spool.counts() == (1, 0)


def test_another_failure_sets_the_request_aside_after_max_attempts(spool):
    doomed = spool.put("lookup", "1.1", env("1.1", "lookup"), RANG_AT, "budget")
    behind = spool.put("incoming", "1.2", env("1.2"), RANG_AT, "budget")

    for attempt in range(1, MAX_ATTEMPTS):
        spool.failed(doomed, "unknown hook lookup", retryable=False)
        assert [(r.id, r.attempts) for r in spool.pending()] == [(doomed, attempt), (behind, 0)]
    spool.failed(doomed, "unknown hook lookup", retryable=False)

    # Set aside: kept in the file and counted, but neither replayed nor holding its call.
    assert [r.id for r in spool.pending()] == [behind]
    assert spool.counts() == (1, 1)
    assert not spool.holds_call("1.1") and spool.holds_call("1.2")


def test_a_long_error_is_kept_short(spool):
    request_id = spool.put("incoming", "1.1", env("1.1"), RANG_AT, "x" * 5000)
    assert len(spool.pending()[0].last_error) == 2000
    spool.failed(request_id, "y" * 5000, retryable=True)
    assert spool.pending()[0].last_error == "y" * 2000


def test_what_was_acknowledged_survives_closing_and_reopening_the_file(tmp_path):
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    ids = put_call(spool, "1795892488.1")
    aside = spool.put("lookup", "1.9", env("1.9", "lookup"), RANG_AT, "budget")
    for _ in range(MAX_ATTEMPTS):
        spool.failed(aside, "unknown hook lookup", retryable=False)
    spool.failed(ids[0], "OperationalError('gone')", retryable=True)
    before = spool.pending()
    spool.close()  # the process ends (or the power goes: synchronous=FULL, WAL)

    reopened = Spool(path)
    try:
        assert reopened.pending() == before
        assert reopened.pending()[0].attempts == 1
        assert reopened.counts() == (3, 1) and reopened.holds_call("1795892488.1")
        # New requests queue behind the old ones, never reusing an id.
        later = reopened.put("incoming", "1.10", env("1.10"), RANG_AT, "budget")
        assert later > max(ids + [aside])
        assert [r.id for r in reopened.pending()] == [*ids, later]
    finally:
        reopened.close()


def test_concurrent_puts_from_many_threads_are_all_kept_each_threads_in_order(spool):
    threads_count, per_thread = 8, 40
    start = threading.Barrier(threads_count)
    errors = []

    def put_many(n):
        try:
            start.wait()
            for i in range(per_thread):
                spool.put("incoming", f"call-{n}", env(f"{n}.{i}"), RANG_AT, "busy")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=put_many, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    pending = spool.pending(limit=1000)
    assert len(pending) == threads_count * per_thread == spool.counts()[0]
    assert len({r.id for r in pending}) == len(pending)
    for n in range(threads_count):
        mine = [r.env["agi_uniqueid"] for r in pending if r.call_key == f"call-{n}"]
        assert mine == [f"{n}.{i}" for i in range(per_thread)]
