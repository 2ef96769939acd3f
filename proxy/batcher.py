"""Joins concurrent model calls into one, as TF Serving's batching does.

While one batch is in the model, new requests queue; the next call takes all of them (up to max_batch) as
soon as the model is free. A lone request goes straight through: nothing waits for a batch to fill. Under a
steady concurrency the clients then settle into groups that take turns: one group's queries are in the
model while the other's answers go out and its next requests are read, so the event loop and the model
work at the same time (docs/experiments.md, `/recommend` latency and throughput).
"""

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

MAX_BATCH = 64  # queries per model call


class Batcher:
    def __init__(self, call: Callable[[list], list], max_batch: int = MAX_BATCH):
        """call: list of queries -> list of answers, same order; runs in a worker thread."""
        self.call, self.max_batch = call, max_batch
        self._queue: list[tuple[Any, asyncio.Future]] = []
        self._draining = False

    async def submit(self, query) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((query, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self):
        try:
            while self._queue:
                batch = [(q, f) for q, f in self._queue[: self.max_batch] if not f.done()]  # done: timed out
                del self._queue[: self.max_batch]
                if not batch:
                    continue
                try:
                    answers = await run_in_threadpool(self.call, [q for q, _ in batch])
                except Exception as e:  # every waiting request gets the failure, none hangs
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                for (_, future), answer in zip(batch, answers):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self._draining = False
