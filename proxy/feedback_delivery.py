"""Moves accepted feedback from the shared store's stream (proxy/redis_store.py) to where training reads it:
a BigQuery table, or locally the SQLite feedback database that `recsys feedback export` writes out.

Every API instance runs one consumer of the stream's consumer group, so delivery goes on while any instance
lives. A consumer reads a batch (XREADGROUP), writes it to the sink, then acknowledges and deletes it (XACK,
XDEL) in one step. A consumer killed between the read and the acknowledgement leaves its batch pending under
its name; another consumer claims entries pending longer than `reclaim_idle` (XAUTOCLAIM) and delivers them.
So every event is delivered at least once, and the sinks keep it once: BigQuery by insertId, SQLite by event
id.
"""

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import redis

from proxy.redis_store import STREAM, client

log = logging.getLogger(__name__)
GROUP = "delivery"


class DeliveryThread:
    """Calls deliver() (-> events delivered, raises on failure) every `interval` seconds, back to back while
    it returns full batches; after a failure it waits twice as long each time, up to max_backoff. After each
    round it measures backlog() (-> events waiting) into `backlog_seen`, for /metrics."""

    def __init__(
        self,
        name: str,
        deliver: Callable[[], int],
        backlog: Callable[[], int],
        batch_size: int,
        interval: float = 1.0,
        max_backoff: float = 60.0,
    ):
        self.deliver, self.backlog, self.batch_size, self.interval, self.max_backoff = (
            deliver,
            backlog,
            batch_size,
            interval,
            max_backoff,
        )
        self.backlog_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self):
        backoff = self.interval
        while not self._stop.wait(backoff):
            try:
                while self.deliver() == self.batch_size and not self._stop.is_set():  # drain a backlog
                    pass
                backoff = self.interval
            except Exception as e:  # any failure of a remote service: the events stay where they are
                backoff = min(self.max_backoff, backoff * 2)
                log.warning("%s: delivery failed (%s); retrying in %.0f s", self._thread.name, e, backoff)
            try:
                self.backlog_seen = self.backlog()
            except Exception as e:  # the store is down: the last measure stands
                log.debug("%s: could not measure the backlog (%s)", self._thread.name, e)

    def start(self):
        self._thread.start()

    def stop(self, join_seconds: float = 5.0):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=join_seconds)


class StreamDelivery:
    """One consumer of the stream: write(events) is the sink (events as FeedbackStore's columns)."""

    def __init__(
        self,
        url: str,
        write: Callable[[list[dict]], None],
        batch_size: int = 500,
        reclaim_idle: float = 30.0,
        interval: float = 1.0,
        max_backoff: float = 60.0,
        forget_after: float = 3600.0,
    ):
        """forget_after: seconds after which a consumer with nothing pending is taken off the group (each
        instance that ever ran left one; a live one is put back by its next read)."""
        self.write, self.batch_size, self.reclaim_idle_ms = write, batch_size, int(reclaim_idle * 1000)
        self.forget_after_ms, self._forgotten_at = int(forget_after * 1000), 0.0
        self.redis = client(url, 10, asynchronous=False)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._group_ready = False
        self._thread = DeliveryThread(
            "feedback-delivery", self.deliver, self.backlog, batch_size, interval, max_backoff
        )

    def deliver(self) -> int:
        """Delivers one batch: this consumer's own pending entries first (a failed write), then entries a dead
        consumer left pending, then new ones; returns how many."""
        if not self._group_ready:
            try:
                self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
            self._group_ready = True
        try:
            entries = (
                self._read("0")
                or self.redis.xautoclaim(
                    STREAM, GROUP, self.consumer, self.reclaim_idle_ms, "0-0", count=self.batch_size
                )[1]
                or self._read(">")
            )
        except redis.ResponseError as e:
            if "NOGROUP" in str(e):  # the server lost the group (a store without its data): make it again
                self._group_ready = False
            raise
        if not entries:
            if time.monotonic() - self._forgotten_at > self.forget_after_ms / 1000:
                self._forget_gone_consumers()
            return 0
        events = [json.loads(fields["event"]) for _, fields in entries if fields]  # None: deleted meanwhile
        if events:
            self.write(events)
        ids = [entry_id for entry_id, _ in entries]
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(STREAM, GROUP, *ids)
            pipe.xdel(STREAM, *ids)
            pipe.execute()
        return len(entries)

    def backlog(self) -> int:
        """Events in the stream: accepted by some instance, not yet written to the sink."""
        return self.redis.xlen(STREAM)

    @property
    def backlog_seen(self) -> int:
        return self._thread.backlog_seen

    def _forget_gone_consumers(self):
        self._forgotten_at = time.monotonic()
        for consumer in self.redis.xinfo_consumers(STREAM, GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > self.forget_after_ms:
                self.redis.xgroup_delconsumer(STREAM, GROUP, consumer["name"])

    def _read(self, start: str) -> list:
        reply = self.redis.xreadgroup(GROUP, self.consumer, {STREAM: start}, count=self.batch_size)
        return reply[0][1] if reply else []

    def start(self):
        self._thread.start()

    def stop(self):
        self._thread.stop()
        self.redis.close()
