"""Joins concurrent model calls into one, as TF Serving's batching does.

While one batch is in the model, new requests queue; the next call takes all of them (up to max_batch).
A lone request goes straight through: nothing waits for a batch to fill. Under concurrent load (the last
call joined several queries and ended less than its own duration ago) a batcher made with gather_share > 0
waits that share of the last call's time before the next call, so that the clients just answered are in it
too: the model costs much less per query in one large batch than in two half-size ones (docs/experiments.md,
`/recommend` latency and throughput).
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

MAX_BATCH = 64  # queries per model call


class Batcher:
    def __init__(self, call: Callable[[list], list], max_batch: int = MAX_BATCH, gather_share: float = 0.0):
        """call: list of queries -> list of answers, same order; runs in a worker thread."""
        self.call, self.max_batch, self.gather_share = call, max_batch, gather_share
        self._queue: list[tuple[Any, asyncio.Future]] = []
        self._draining = False
        self._last_size, self._last_seconds, self._last_ended = 1, 0.0, 0.0  # of the last call

    async def submit(self, query) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((query, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _under_load(self) -> bool:
        recent = time.perf_counter() - self._last_ended < self._last_seconds
        return self.gather_share > 0 and self._last_size > 1 and recent and len(self._queue) < self.max_batch

    async def _drain(self):
        try:
            while self._queue:
                if self._under_load():
                    await asyncio.sleep(self.gather_share * self._last_seconds)
                batch = [(q, f) for q, f in self._queue[: self.max_batch] if not f.done()]  # done: timed out
                del self._queue[: self.max_batch]
                if not batch:
                    continue
                started = time.perf_counter()
                try:
                    answers = await run_in_threadpool(self.call, [q for q, _ in batch])
                except Exception as e:  # every waiting request gets the failure, none hangs
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                finally:
                    self._last_ended = time.perf_counter()
                    self._last_size, self._last_seconds = len(batch), self._last_ended - started
                for (_, future), answer in zip(batch, answers):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self._draining = False
