"""proxy/batcher.py: concurrent queries joined into one call, a lone one straight through, the queries that
came during a call taken by the next one as soon as the model is free (the event loop busy or not), at most
max_batch a call."""

import asyncio
import time

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
        batcher = Batcher(model)
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


def test_the_next_call_takes_what_came_during_the_last_one_without_waiting_for_more():
    """Two queries together, one more while they are in the model, then the first two clients come back
    just after their answer (CALL_SECONDS / 10 later): the late query's call starts when the model is free,
    and the clients who came back are in the call after it."""
    model = SlowModel()

    async def scenario():
        batcher = Batcher(model)

        async def client(query):
            answer = await batcher.submit(query)
            await asyncio.sleep(CALL_SECONDS / 10)
            return answer, await batcher.submit(query + 100)

        async def late():
            await asyncio.sleep(CALL_SECONDS / 4)
            return await batcher.submit(3)

        started = time.perf_counter()
        answers = await asyncio.gather(client(1), client(2), late())
        return answers, time.perf_counter() - started

    answers, seconds = run(scenario)
    assert answers == [(10, 1010), (20, 1020), 30]
    assert model.batches == [[1, 2], [3], [101, 102]]
    assert seconds < CALL_SECONDS * 3.5  # three calls back to back, no wait between them


def test_a_call_takes_at_most_max_batch_queries():
    model = SlowModel()

    async def scenario():
        batcher = Batcher(model, max_batch=2)
        return await asyncio.gather(*(batcher.submit(q) for q in range(5)))

    assert run(scenario) == [0, 10, 20, 30, 40]
    assert model.batches == [[0, 1], [2, 3], [4]]


def test_a_failed_call_fails_every_query_in_it_and_the_next_call_runs():
    calls = []

    def failing_once(queries):
        calls.append(list(queries))
        time.sleep(0.05)
        if len(calls) == 1:
            raise RuntimeError("model down")
        return queries

    async def scenario():
        batcher = Batcher(failing_once)
        first = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        return first, await batcher.submit(3)

    first, second = run(scenario)
    assert [str(e) for e in first] == ["model down", "model down"] and second == 3


def test_the_next_call_starts_when_the_model_is_free_even_while_the_event_loop_is_busy():
    """A query waits while another is in the model; then the event loop is held (a slow handler) past the end
    of that call: the waiting query's call starts as the first ends, not when the loop is free again."""
    model = SlowModel()
    starts = []

    def timed(queries):
        starts.append(time.perf_counter())
        return model(queries)

    async def scenario():
        batcher = Batcher(timed)
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(CALL_SECONDS / 4)
        second = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(CALL_SECONDS / 20)  # the second query is handed over
        time.sleep(CALL_SECONDS * 2)  # the loop busy until well after the first call's end
        loop_free = time.perf_counter()
        return await first, await second, loop_free

    first, second, loop_free = run(scenario)
    assert (first, second) == (10, 20) and model.batches == [[1], [2]]
    assert starts[1] < loop_free - CALL_SECONDS / 2


def test_with_halves_a_call_takes_at_most_half_of_the_queries_in_flight():
    """Eight clients, three queries each, each client back CALL_SECONDS / 10 after its answer: two groups of
    four take turns in the model (one group's answers go out while the other's queries are in it); a lone
    query still goes straight through."""
    model = SlowModel()

    async def scenario():
        batcher = Batcher(model, halves=True)

        async def client(query):
            answers = []
            for n in range(3):
                answers.append(await batcher.submit(query + 100 * n))
                await asyncio.sleep(CALL_SECONDS / 10)
            return answers

        answers = await asyncio.gather(*(client(q) for q in range(8)))
        return answers, await batcher.submit(1000)

    answers, lone = run(scenario)
    assert answers == [[10 * (q + 100 * n) for n in range(3)] for q in range(8)] and lone == 10000
    assert [len(b) for b in model.batches] == [4] * 6 + [1]
