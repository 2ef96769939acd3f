"""Where the API keeps users' recent items and the feedback it accepts, behind one interface (async methods:
start, stop, histories, accept, users_with_history, count_by_period, count_by_type):

- LocalStore, the embedded default (`make demo`): histories in this process's memory, seeded at start-up from
  the training data's recent events (seed_events, which `recsys serve --data` reads) and the feedback stored
  before; feedback in a local SQLite file (proxy/feedback_store.py),
  streamed to BigQuery from there when a table is configured. One instance only.
- SharedStore (`recsys serve --store redis://...`): both on a Redis-protocol server that every instance shares
  (proxy/redis_store.py), the feedback moved on by each instance's consumer (proxy/feedback_delivery.py).
  Nothing is read at start-up; `recsys store load` puts the training data's histories in the store once.
"""

import itertools
from collections.abc import Callable, Iterable

from starlette.concurrency import run_in_threadpool

from proxy.batcher import Batcher
from proxy.bigquery_sink import BigQuerySink, BigQueryTable
from proxy.feedback_delivery import StreamDelivery
from proxy.feedback_store import FeedbackStore
from proxy.redis_store import RedisStore
from serving.history import HistoryStore

DATA_WITH_STORE = (
    "--data seeds the in-process store only; with --store, load the data into the store once with "
    "`recsys store load --data DIR --store URL`"
)


# (user_id, item_id, interaction_type) of each user's recent events, oldest first; read once, at start-up.
SeedEvents = Iterable[tuple[str, str, str]]


class LocalStore:
    def __init__(
        self, feedback_db: str, seed_events: SeedEvents | None = None, bigquery_table: str | None = None
    ):
        self.feedback_db, self.seed_events, self.bigquery_table = feedback_db, seed_events, bigquery_table
        self.history = HistoryStore()

    async def start(self):
        if self.seed_events:
            self.history.add_events(self.seed_events)
        self.feedback = FeedbackStore(self.feedback_db)
        self.history.add_events(
            (e["user_id"], e["item_id"], e["interaction_type"]) for e in self.feedback.events()
        )
        # Concurrent requests' events share one transaction (one fsync); each answers only once it committed.
        self._writer = Batcher(self.feedback.accept_groups)
        self._sink = BigQuerySink(self.feedback, self.bigquery_table) if self.bigquery_table else None
        if self._sink:
            self._sink.start()

    async def stop(self):
        if self._sink:
            self._sink.stop()
        self.feedback.close()

    def delivery_backlog(self) -> int | None:
        """Events waiting for BigQuery, as last measured; None without BigQuery (nothing to deliver)."""
        return self._sink.backlog_seen if self._sink else None

    async def histories(self, user_ids: list[str]) -> list[tuple[list[str], list[str]]]:
        return [(self.history.history(u), self.history.seen(u)) for u in user_ids]

    async def accept(self, events: list[dict]) -> list[tuple[str, bool]]:
        accepted = await self._writer.submit(events)
        for event, (_, stored) in zip(events, accepted):
            if stored:  # not a retry of an event already stored (its idempotency_key)
                self.history.add(event["user_id"], event["item_id"], event["interaction_type"])
        return accepted

    async def users_with_history(self, limit: int) -> list[str]:
        return list(itertools.islice(self.history.users(), limit))

    async def count_by_period(self, periods: list[str]) -> list[tuple[str, str, int]]:
        return await run_in_threadpool(self.feedback.count_by_period, periods)

    async def count_by_type(self) -> dict[str, int]:
        return await run_in_threadpool(self.feedback.count_by_type)


class SharedStore(RedisStore):
    """RedisStore with this instance's consumer of the feedback stream, writing to `sink`."""

    def __init__(
        self, url: str, read_timeout: float, sink: Callable[[list[dict]], None], reclaim_idle: float
    ):
        super().__init__(url, read_timeout)
        self.delivery = StreamDelivery(url, sink, reclaim_idle=reclaim_idle)

    async def start(self):
        await self.check_durable()
        self.delivery.start()

    async def stop(self):
        await run_in_threadpool(self.delivery.stop)
        await self.close()

    def delivery_backlog(self) -> int | None:
        """Events in the stream not yet delivered to the sink, as last measured."""
        return self.delivery.backlog_seen


def open_store(
    store_url: str | None,
    feedback_db: str,
    seed_events: SeedEvents | None,
    bigquery_table: str | None,
    read_timeout: float,
    reclaim_idle: float,
):
    """The store `recsys serve` was given: with store_url the shared one, delivering to the BigQuery table if
    one is given, else to the SQLite database feedback_db (for `recsys feedback export`)."""
    if not store_url:
        return LocalStore(feedback_db, seed_events, bigquery_table)
    if seed_events:
        raise ValueError(DATA_WITH_STORE)
    sink = BigQueryTable(bigquery_table).write if bigquery_table else FeedbackStore(feedback_db).add_delivered
    return SharedStore(store_url, read_timeout, sink, reclaim_idle)
