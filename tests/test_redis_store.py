"""The shared store on a real redis-server: histories, idempotent appends across instances, the degraded read,
the one-time load of training histories, and the stream's delivery with a dead consumer's entries
reclaimed."""

import asyncio
import json
import time

import pytest
import redis

from proxy.bigquery_sink import BigQueryTable
from proxy.feedback_delivery import GROUP, StreamDelivery
from proxy.feedback_store import FeedbackStore
from proxy.redis_store import STREAM, RedisStore, StoreUnavailable, load
from tests.redis_server import RedisServer
from tests.test_bigquery_sink import TABLE, InsertAllRecorder, client


def event(user, item, kind="click", **extra):
    return {"user_id": user, "item_id": item, "interaction_type": kind, "category": "c", **extra}


def run(coroutine):
    return asyncio.run(coroutine)


async def accept_and_read(url, events, users):
    store = RedisStore(url)
    try:
        accepted = await store.accept(events)
        return accepted, await store.histories(users)
    finally:
        await store.close()


def test_histories_follow_accepted_events_newest_seen_first_dislikes_only_excluded(redis_server):
    events = [
        event("a", "1"),
        event("a", "2", "like"),
        event("a", "3", "dislike"),
        event("a", "1", "view"),
        event("b", "9"),
    ]
    accepted, [(history_a, seen_a), (history_b, seen_b), nobody] = run(
        accept_and_read(redis_server.url, events, ["a", "b", "nobody"])
    )
    assert all(stored for _, stored in accepted) and len({event_id for event_id, _ in accepted}) == 5
    assert history_a == ["1", "2", "1"]  # oldest first, as the model's history input
    assert seen_a == ["1", "3", "2"]  # distinct, newest first
    assert (history_b, seen_b) == (["9"], ["9"]) and nobody == ([], [])


def test_an_idempotency_key_holds_across_instances_and_within_a_batch(redis_server):
    async def scenario():
        one, two = RedisStore(redis_server.url), RedisStore(redis_server.url)
        [(first, stored)] = await one.accept([event("a", "1", idempotency_key="k")])
        again = await two.accept(
            [
                event("a", "1", idempotency_key="k"),
                event("a", "2", idempotency_key="k2"),
                event("a", "2", idempotency_key="k2"),
            ]
        )
        racing = await asyncio.gather(
            *(store.accept([event("r", "5", idempotency_key="race")]) for store in (one, two) * 8)
        )
        histories = await one.histories(["a", "r"])
        await one.close(), await two.close()
        return first, stored, again, racing, histories

    first, stored, again, racing, [(history, _), (raced, _)] = run(scenario())
    assert stored and again[0] == (first, False)
    assert again[1][1] and again[2] == (again[1][0], False)
    assert sum(stored for [(_, stored)] in racing) == 1 and len({event_id for [(event_id, _)] in racing}) == 1
    assert history == ["1", "2"] and raced == ["5"]  # each event once in the history
    assert redis.Redis.from_url(redis_server.url).xlen(STREAM) == 3


def test_reads_fail_fast_when_the_store_is_down_or_hangs(redis_server):
    async def read_time(store):
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable):
            await store.histories(["a"])
        return time.perf_counter() - started

    async def scenario():
        store = RedisStore(redis_server.url, read_timeout=0.05)
        await store.histories(["a"])  # a pooled connection, as in a running API
        redis_server.process.send_signal(19)  # SIGSTOP: the server hangs
        try:
            hung = await read_time(store)
        finally:
            redis_server.process.send_signal(18)  # SIGCONT
        redis_server.kill()
        down = await read_time(store)
        with pytest.raises(StoreUnavailable):
            await store.accept([event("a", "1")])
        await store.close()
        return hung, down

    hung, down = run(scenario())
    assert hung < 0.5 and down < 0.5


def test_a_store_without_an_append_only_file_is_refused(tmp_path):
    server = RedisServer(str(tmp_path / "r"), appendonly=False).start()
    try:
        with pytest.raises(RuntimeError, match="appendonly no"):
            run(RedisStore(server.url).check_durable())
    finally:
        server.stop()


def test_load_fills_only_users_the_store_has_not_seen_and_twice_is_once(redis_server):
    run(accept_and_read(redis_server.url, [event("live", "x", "like")], []))
    events = [("live", "old", "view"), ("new", "1", "view"), ("new", "2", "dislike"), ("new", "3", "like")]
    assert load(redis_server.url, events, batch_users=1) == 1  # "live" already had events: left as it is
    assert load(redis_server.url, events) == 0
    _, [(history, seen), live] = run(accept_and_read(redis_server.url, [], ["new", "live"]))
    assert history == ["1", "3"] and seen == ["3", "2", "1"] and live == (["x"], ["x"])


def test_delivery_moves_each_event_once_and_reclaims_what_a_dead_consumer_left(redis_server, tmp_path):
    accepted, _ = run(accept_and_read(redis_server.url, [event("u", str(n)) for n in range(7)], []))
    ids = [event_id for event_id, _ in accepted]
    sink = FeedbackStore(str(tmp_path / "fb.sqlite"))
    StreamDelivery(redis_server.url, sink.add_delivered).deliver()  # makes the consumer group; delivers all 7
    assert [e["event_id"] for e in sink.events()] == ids

    accepted, _ = run(accept_and_read(redis_server.url, [event("v", str(n)) for n in range(5)], []))
    more = [event_id for event_id, _ in accepted]
    dead_consumer = redis.Redis.from_url(redis_server.url, decode_responses=True)
    [[_, taken]] = dead_consumer.xreadgroup(GROUP, "dead", {STREAM: ">"}, count=3)  # read, never acknowledged
    live = StreamDelivery(redis_server.url, sink.add_delivered, batch_size=3, reclaim_idle=0.2)
    assert live.deliver() == 2  # the two nobody took
    assert live.deliver() == 0  # the dead one's three are not idle long enough yet
    time.sleep(0.3)
    assert live.deliver() == 3  # claimed and delivered
    assert sorted(e["event_id"] for e in sink.events()) == sorted(ids + more)
    assert dead_consumer.xlen(STREAM) == 0 and dead_consumer.xpending(STREAM, GROUP)["pending"] == 0
    sink.add_delivered([json.loads(fields["event"]) for _, fields in taken])  # delivered twice: stored once
    assert len(sink.events()) == 12


def test_a_failing_sink_keeps_the_batch_pending_and_delivers_it_later_to_bigquery(redis_server):
    accepted, _ = run(
        accept_and_read(redis_server.url, [event("u", str(n), "rating", rating=4.0) for n in range(4)], [])
    )
    recorder = InsertAllRecorder(failures=1)
    delivery = StreamDelivery(redis_server.url, BigQueryTable(TABLE, client(recorder)).write)
    with pytest.raises(Exception, match="backendError"):
        delivery.deliver()
    assert delivery.deliver() == 4  # its own pending entries first
    assert list(recorder.stored) == [event_id for event_id, _ in accepted]
    assert recorder.stored[accepted[0][0]]["rating"] == 4.0
    assert len(recorder.calls) == 2 and delivery.deliver() == 0


def test_consumers_of_instances_gone_are_taken_off_the_group(redis_server):
    run(accept_and_read(redis_server.url, [event("u", "1")], []))
    reader = redis.Redis.from_url(redis_server.url, decode_responses=True)
    StreamDelivery(redis_server.url, lambda events: None, forget_after=3600).deliver()  # the group, the event
    reader.xreadgroup(GROUP, "gone-with-nothing-pending", {STREAM: ">"})
    run(accept_and_read(redis_server.url, [event("u", "2")], []))
    reader.xreadgroup(GROUP, "gone-with-a-pending-event", {STREAM: ">"})
    time.sleep(0.3)
    live = StreamDelivery(redis_server.url, lambda events: None, reclaim_idle=60, forget_after=0.2)
    assert live.deliver() == 0  # nothing new; the pending event is not idle long enough to take
    assert {c["name"] for c in reader.xinfo_consumers(STREAM, GROUP)} >= {"gone-with-a-pending-event"}
    assert "gone-with-nothing-pending" not in {c["name"] for c in reader.xinfo_consumers(STREAM, GROUP)}
