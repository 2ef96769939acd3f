"""Joins concurrent model calls into one, as TF Serving's batching does.

While one batch is in the model, new requests queue; the next call takes all of them (up to max_batch) as
soon as the model is free. A lone request goes straight through: nothing waits for a batch to fill. The calls
run in the batcher's own thread, which takes the next batch the moment a call returns: the model does not
wait for a busy event loop to come round to it (docs/experiments.md, `/recommend` latency and throughput).

With `halves`, a call takes at most half of the queries in flight (those waiting and the last call's, whose
clients come back while it runs): for a model in the API's process, whose time grows with the batch, one half
is in the model while the event loop answers the other and reads its next requests, where whole batches
would leave each idle while the other works.
"""

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

MAX_BATCH = 64  # queries per model call
IDLE_SECONDS = 5.0  # the thread ends after this long without a query; the next query starts another


class Batcher:
    def __init__(self, call: Callable[[list], list], max_batch: int = MAX_BATCH, halves: bool = False):
        """call: list of queries -> list of answers, same order; runs in the batcher's thread."""
        self.call, self.max_batch, self.halves = call, max_batch, halves
        self._arriving: list = []  # this event loop iteration's queries, handed to the thread together
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # the thread's: queries not yet in a call
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def submit(self, query) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._arriving:
            loop.call_soon(self._hand_over)
        self._arriving.append((query, future, loop))
        return await future

    def _hand_over(self):
        """Once the loop has run what was ready with the first query (the other requests that came in the
        same read of the sockets), their queries go to the thread together, so that they share a call."""
        arrived, self._arriving = self._arriving, []
        with self._lock:
            self._queue.put(arrived)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
                self._thread.start()

    def _run(self):
        waiting = []  # taken from the queue, not yet in a call
        last = 0  # the last call's queries
        while True:
            if not waiting:
                try:
                    waiting = self._queue.get(timeout=IDLE_SECONDS)
                except queue.Empty:
                    with self._lock:
                        if self._queue.empty():
                            self._thread = None
                            return
                    continue
            while not self._queue.empty():
                waiting += self._queue.get()
            size = min(self.max_batch, -(-(len(waiting) + last) // 2) if self.halves else len(waiting))
            batch, waiting = waiting[:size], waiting[size:]
            last = len(batch)
            batch = [entry for entry in batch if not entry[1].done()]  # done: timed out
            if batch:
                self._answer(batch)

    def _answer(self, batch: list):
        try:
            answers, error = self.call([q for q, _, _ in batch]), None
        except Exception as e:  # every waiting request gets the failure, none hangs
            answers, error = [None] * len(batch), e
        by_loop = {}
        for (_, future, loop), answer in zip(batch, answers):
            by_loop.setdefault(loop, []).append((future, answer))
        for loop, answered in by_loop.items():
            with contextlib.suppress(RuntimeError):  # its event loop has closed: nobody waits for these
                loop.call_soon_threadsafe(_settle, answered, error)


def _settle(answered: list[tuple[asyncio.Future, Any]], error: Exception | None):
    for future, answer in answered:
        if future.done():  # timed out
            continue
        if error is None:
            future.set_result(answer)
        else:
            future.set_exception(error)
