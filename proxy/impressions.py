"""What the API served: one row per recommended item (request id, user, position, item, model version,
variant, fallback), so that feedback carrying the answer's request_id joins to the list that led to it.

Rows go into the SQLite file that holds the feedback (`recsys serve --feedback-db`), table `impressions`, and
from there, when a BigQuery table is configured, to the table `impressions` of the feedback table's dataset
(the same at-least-once delivery as feedback: proxy/bigquery_sink.py, each row's insertId its impression id).
With the shared store (`--store`) each recorded answer also goes to its monitor stream (proxy/redis_store.py),
where the online metrics of every instance read all instances' answers.

Cheap: only a share of requests is recorded (`sample_rate`, chosen by a hash of the request id, so every
metric over the sampled requests is unbiased); concurrent requests share one transaction; the answer does not
wait for the write (a slow or locked file delays no answer; the API's reads of the impressions, and its
shutdown, wait for those under way) and the commit not for an fsync (WAL with synchronous=NORMAL): a crash of
the process loses the answers of its last milliseconds, a power cut its last moments."""

import asyncio
import hashlib
import logging
import os
import sqlite3
import threading
from datetime import datetime, timezone

from proxy.batcher import Batcher
from proxy.feedback_store import SequencedTable, utc_iso
from proxy.redis_store import StoreUnavailable

log = logging.getLogger(__name__)
TABLE = "impressions"
SINK = "bigquery-impressions"
NO_VARIANT = ""  # the in-process model: one version, no version label
SCHEMA = """
CREATE TABLE IF NOT EXISTS impressions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- arrival order
  impression_id TEXT NOT NULL UNIQUE,      -- <request_id>:<position>
  request_id TEXT NOT NULL,
  served_at TEXT NOT NULL,                 -- ISO 8601, UTC
  user_id TEXT NOT NULL,
  position INTEGER NOT NULL,               -- 1 for the first item of the list
  item_id TEXT NOT NULL,
  model_version TEXT NOT NULL,
  variant TEXT NOT NULL,                   -- the version label asked for ('' for the in-process model)
  fallback INTEGER NOT NULL                -- 1: the list is the popularity fallback, not the model's
);
CREATE INDEX IF NOT EXISTS impressions_served_at ON impressions (served_at);
CREATE INDEX IF NOT EXISTS impressions_request ON impressions (request_id);
CREATE TABLE IF NOT EXISTS delivered (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL)"""
COLUMNS = (
    "impression_id",
    "request_id",
    "served_at",
    "user_id",
    "position",
    "item_id",
    "model_version",
    "variant",
    "fallback",
)


INSERT_SQL = (
    f"INSERT INTO impressions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (impression_id) DO NOTHING"
)


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request is recorded: the same answer for the same id in every instance."""
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") < rate * 2**64


def rows_of(response, served_at: str) -> list[dict]:
    """The impression rows of one RecommendResponse."""
    return [
        dict(
            impression_id=f"{response.request_id}:{position}",
            request_id=response.request_id,
            served_at=served_at,
            user_id=response.user_id,
            position=position,
            item_id=item.item_id,
            model_version=response.model_version,
            variant=response.model_label or NO_VARIANT,
            fallback=int(response.fallback is not None),
        )
        for position, item in enumerate(response.recommendations, start=1)
    ]


def bigquery_row(row: dict) -> dict:
    return {c: row[c] for c in COLUMNS}


def bigquery_table(feedback_table: str) -> str:
    """project.dataset.impressions beside project.dataset.<feedback table>."""
    return feedback_table.rsplit(".", 1)[0] + "." + TABLE


class ImpressionLog(SequencedTable):
    """The impressions table of the SQLite file at `path`; record() is for the API's event loop."""

    TABLE = "impressions"
    COLUMNS = COLUMNS

    def __init__(
        self,
        path: str,
        sample_rate: float = 1.0,
        bigquery_feedback_table: str | None = None,
        shared_store=None,
    ):
        """shared_store: the RedisStore every instance shares (`--store`), where the recorded answers also go,
        so that the online metrics of any instance count every instance's answers."""
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"impression sample rate: {sample_rate} is outside 0..1")
        self.path, self.sample_rate, self.bigquery_feedback_table = path, sample_rate, bigquery_feedback_table
        self.shared_store = shared_store
        self._sink = None
        self._writing: set[asyncio.Task] = set()  # record()'s writes under way

    def open(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._lock = threading.Lock()
        # timeout: the feedback store writes to the same file through its own connection
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._writer = Batcher(self.add)
        return self

    async def start(self):
        self.open()
        if self.bigquery_feedback_table:
            from proxy.bigquery_sink import BigQuerySink

            table = bigquery_table(self.bigquery_feedback_table)
            self._sink = BigQuerySink(self, table, sink=SINK, to_row=bigquery_row, row_id="impression_id")
            self._sink.start()

    async def stop(self):
        await self.flush()
        if self._sink:
            self._sink.stop()
        self.close()

    def record(self, responses: list):
        """Records the sampled ones of the responses (RecommendResponse) just served. The answer does not wait
        for the write: flush() does, before anything reads the impressions."""
        served_at = utc_iso(datetime.now(timezone.utc))
        groups = [
            rows
            for r in responses
            if sampled(r.request_id, self.sample_rate) and (rows := rows_of(r, served_at))
        ]
        if groups:
            write = asyncio.get_running_loop().create_task(self._write(groups))
            self._writing.add(write)
            write.add_done_callback(self._writing.discard)

    async def flush(self):
        """Waits until the impressions of every answer served so far are written."""
        while self._writing:
            await asyncio.gather(*self._writing)

    async def _write(self, groups: list[list[dict]]):
        # The answer has gone out all the same when a write fails: impressions are a sample anyway.
        try:
            await self._writer.submit([row for rows in groups for row in rows])
        except sqlite3.Error as e:
            log.warning("impressions not recorded: %s", e)
        if self.shared_store is not None:
            try:
                await self.shared_store.record_impressions(groups)
            except StoreUnavailable as e:
                log.warning("impressions not recorded in the shared store: %s", e)

    def add(self, groups: list[list[dict]]) -> list[None]:
        """Stores several requests' rows in one transaction (a request id recorded before is kept once)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    INSERT_SQL,
                    [tuple(row[c] for c in COLUMNS) for group in groups for row in group],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [None] * len(groups)

    def close(self):
        self._db.close()
