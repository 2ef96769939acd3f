"""Forwards stored feedback to a BigQuery table (the interactions contract's columns), in arrival order.

The local FeedbackStore is the write-ahead buffer: the API answers 202 once an event is committed there;
this thread then streams events to BigQuery and advances its delivered mark only after BigQuery accepted
them, so a failing BigQuery delays events but never loses them. Each row carries its event id as the
streaming insertId: a batch re-sent after a crash between insert and mark is de-duplicated by BigQuery.
"""

import logging
import threading
import time

from proxy.feedback_store import FeedbackStore, contract_row

log = logging.getLogger(__name__)
SINK = "bigquery"


class BigQuerySink:
    def __init__(self, store: FeedbackStore, table: str, client=None, batch_size: int = 500,
                 interval: float = 1.0, max_backoff: float = 60.0):
        if client is None:
            from google.cloud import bigquery
            client = bigquery.Client()
        self.store, self.table, self.client = store, table, client
        self.batch_size, self.interval, self.max_backoff = batch_size, interval, max_backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bigquery-sink", daemon=True)

    def deliver(self) -> int:
        """Sends the next batch of undelivered events; returns how many BigQuery accepted (raises if it failed)."""
        events = self.store.events(after_seq=self.store.delivered(SINK), limit=self.batch_size)
        if not events:
            return 0
        # retry=None: this loop retries with its own backoff; the client's default would block up to 10 min.
        errors = self.client.insert_rows_json(self.table, [contract_row(e) for e in events],
                                              row_ids=[e["event_id"] for e in events], retry=None, timeout=30)
        if errors:
            raise RuntimeError(f"BigQuery refused rows of {self.table}: {errors[:3]}")
        self.store.mark_delivered(SINK, events[-1]["seq"])
        return len(events)

    def _run(self):
        backoff = self.interval
        while not self._stop.wait(backoff):
            try:
                while self.deliver() == self.batch_size:  # drain a backlog without waiting between batches
                    pass
                backoff = self.interval
            except Exception as e:  # any failure of the remote service: keep the events, retry later
                backoff = min(self.max_backoff, backoff * 2)
                log.warning("BigQuery delivery failed (%s); retrying in %.0f s", e, backoff)

    def start(self):
        self._thread.start()

    def stop(self, flush_seconds: float = 5.0):
        """Stops the thread, then delivers what is left for up to flush_seconds (Cloud Run gives an instance
        10 s after SIGTERM, and its /tmp goes with it)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=flush_seconds)
        deadline = time.monotonic() + flush_seconds
        try:
            while time.monotonic() < deadline and self.deliver():
                pass
        except Exception as e:  # BigQuery still failing: the events stay in the store for the next start
            log.warning("BigQuery delivery at shutdown failed (%s); %s keeps the events", e, self.store.path)
