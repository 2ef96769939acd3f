"""Feedback to a BigQuery table (the interactions contract's columns).

BigQueryTable writes events with insertAll, each row's insertId its event id: BigQuery drops a row sent again
with an insertId it has seen, so a batch re-sent after a crash between the insert and the record of it is not
stored twice. Both delivery paths write through it: BigQuerySink from the local FeedbackStore (the embedded
default), proxy/feedback_delivery.py from the shared store's stream.

BigQuerySink: the local FeedbackStore is the write-ahead buffer; the API answers 202 once an event is
committed there; this thread then streams events to BigQuery in arrival order and advances its delivered mark
only after BigQuery accepted them, so a failing BigQuery delays events but never loses them.
"""

import logging
import time

from proxy.feedback_delivery import DeliveryThread
from proxy.feedback_store import FeedbackStore, contract_row

log = logging.getLogger(__name__)
SINK = "bigquery"


class BigQueryTable:
    """to_row: a stored row as the table's row (feedback: the interactions contract); row_id: its unique
    id."""

    def __init__(self, table: str, client=None, to_row=contract_row, row_id: str = "event_id"):
        if client is None:
            from google.cloud import bigquery

            client = bigquery.Client()
        self.table, self.client, self.to_row, self.row_id = table, client, to_row, row_id

    def write(self, events: list[dict]):
        """Inserts the events (the store's rows); raises unless BigQuery accepted every row."""
        # retry=None: the caller retries with its own backoff; the client's default would block up to 10 min.
        errors = self.client.insert_rows_json(
            self.table,
            [self.to_row(e) for e in events],
            row_ids=[e[self.row_id] for e in events],
            retry=None,
            timeout=30,
        )
        if errors:
            raise RuntimeError(f"BigQuery refused rows of {self.table}: {errors[:3]}")


class BigQuerySink:
    def __init__(
        self,
        store: FeedbackStore,
        table: str,
        client=None,
        batch_size: int = 500,
        interval: float = 1.0,
        max_backoff: float = 60.0,
        sink: str = SINK,
        to_row=contract_row,
        row_id: str = "event_id",
    ):
        """store: FeedbackStore, or any store of rows with its events/count_after/delivered/mark_delivered
        (impressions); sink: the name its delivered mark is kept under."""
        self.store, self.sink, self.batch_size = store, sink, batch_size
        self.table = BigQueryTable(table, client, to_row, row_id)
        self._thread = DeliveryThread(sink, self.deliver, self.backlog, batch_size, interval, max_backoff)

    def deliver(self) -> int:
        """Sends the next batch of undelivered events; returns how many BigQuery accepted (raises if it
        failed)."""
        events = self.store.events(after_seq=self.store.delivered(self.sink), limit=self.batch_size)
        if not events:
            return 0
        self.table.write(events)
        self.store.mark_delivered(self.sink, events[-1]["seq"])
        return len(events)

    def backlog(self) -> int:
        """Events stored here and not yet accepted by BigQuery."""
        return self.store.count_after(self.store.delivered(self.sink))

    @property
    def backlog_seen(self) -> int:
        return self._thread.backlog_seen

    def start(self):
        self._thread.start()

    def stop(self, flush_seconds: float = 5.0):
        """Stops the thread, then delivers what is left for up to flush_seconds (Cloud Run gives an instance
        10 s after SIGTERM, and its /tmp goes with it)."""
        self._thread.stop(flush_seconds)
        deadline = time.monotonic() + flush_seconds
        try:
            while time.monotonic() < deadline and self.deliver():
                pass
        except Exception as e:  # BigQuery still failing: the events stay in the store for the next start
            log.warning("BigQuery delivery at shutdown failed (%s); %s keeps the events", e, self.store.path)
