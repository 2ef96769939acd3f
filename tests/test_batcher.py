"""proxy/batcher.py: concurrent queries joined into one call, a lone one straight through, and (gather_share)
the wait under load that lets the clients just answered join the next call."""

import asyncio
import time

import pytest

from proxy.batcher import Batcher

CALL_SECONDS = 0.2


class SlowModel:
    """Answers each query with itself after CALL_SECONDS, recording the batches it was called with."""

    def __init__(self):
        self.batches = []

    def __call__(self, queries):
        self.batches.append(list(queries))
        time.sleep(CALL_SECONDS)
        return [q * 10 for q in queries]


def run(scenario):
    return asyncio.run(scenario())


def test_a_lone_query_goes_straight_through():
    model = SlowModel()

    async def scenario():
        batcher = Batcher(model, gather_share=0.5)
        started = time.perf_counter()
        assert await batcher.submit(1) == 10
        first = time.perf_counter() - started
        await asyncio.sleep(CALL_SECONDS * 1.5)  # a pause longer than the last call: no wait either
        started = time.perf_counter()
        assert await batcher.submit(2) == 20
        return first, time.perf_counter() - started

    for seconds in run(scenario):
        assert seconds < CALL_SECONDS * 1.4
    assert model.batches == [[1], [2]]


async def clients_answered_then_back(batcher: Batcher):
    """Two queries together, one more while they are in the model, then the first two clients come back
    just after their answer (CALL_SECONDS / 10 later), as clients at a steady concurrency do."""

    async def client(query):
        answer = await batcher.submit(query)
        await asyncio.sleep(CALL_SECONDS / 10)
        return answer, await batcher.submit(query + 100)

    async def late():
        await asyncio.sleep(CALL_SECONDS / 4)
        return await batcher.submit(3)

    return await asyncio.gather(client(1), client(2), late())


@pytest.mark.parametrize(
    "gather_share, batches",
    [
        (0.0, [[1, 2], [3], [101, 102]]),  # the late query alone: the clients answered miss that call
        (0.5, [[1, 2], [3, 101, 102]]),  # the wait lets them join it
    ],
)
def test_under_load_a_call_waits_for_the_clients_just_answered(gather_share, batches):
    model = SlowModel()
    answers = run(lambda: clients_answered_then_back(Batcher(model, gather_share=gather_share)))
    assert answers == [(10, 1010), (20, 1020), 30]
    assert model.batches == batches


def test_a_failed_call_fails_every_query_in_it_and_the_next_call_runs():
    calls = []

    def failing_once(queries):
        calls.append(list(queries))
        time.sleep(0.05)
        if len(calls) == 1:
            raise RuntimeError("model down")
        return queries

    async def scenario():
        batcher = Batcher(failing_once, gather_share=0.5)
        first = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        return first, await batcher.submit(3)

    first, second = run(scenario)
    assert [str(e) for e in first] == ["model down", "model down"] and second == 3
