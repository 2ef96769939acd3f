"""Feedback to BigQuery through the real google-cloud-bigquery client, its HTTP transport replaced by a
recorder that plays BigQuery's tabledata.insertAll: what would be sent, in order, failures and recovery."""

import json
import time
from datetime import datetime
from types import SimpleNamespace
from unittest import mock

import pytest
import requests
from google.api_core.exceptions import ServiceUnavailable
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from proxy import impressions
from proxy.bigquery_sink import SINK, BigQuerySink
from proxy.feedback_store import FeedbackStore
from tests import bigquery_ddl

pytestmark = pytest.mark.fast

TABLE = "my-project.recsys.interactions"


class InsertAllRecorder:
    """Answers the client's HTTP requests as BigQuery would; `failures` first calls fail with 503."""

    is_mtls = False  # asked by google-cloud-core of its transport

    def __init__(self, failures: int = 0):
        self.failures, self.calls, self.stored = failures, [], {}

    def request(self, method, url, data=None, headers=None, **kwargs):
        self.calls.append((method, url, json.loads(data)))
        response = requests.Response()
        response.request = requests.Request(method, url).prepare()
        if self.failures:
            self.failures -= 1
            response.status_code, response._content = (
                503,
                b'{"error": {"code": 503, "message": "backendError"}}',
            )
        else:
            for row in json.loads(data)["rows"]:
                self.stored.setdefault(row["insertId"], row["json"])  # BigQuery de-duplicates by insertId
            response.status_code, response._content = 200, b"{}"
        return response


def client(recorder):
    return bigquery.Client(project="my-project", credentials=AnonymousCredentials(), _http=recorder)


def events(n, start=0):
    return [
        {
            "user_id": f"u{i}",
            "item_id": f"i{i}",
            "interaction_type": "rating" if i % 2 else "click",
            "rating": 4.0 if i % 2 else None,
            "request_id": f"r{i}",
            "category": "c",
        }
        for i in range(start, n)
    ]


def test_events_are_sent_as_insert_all_rows_in_the_interactions_columns(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    ids = store.append(events(3))
    recorder = InsertAllRecorder()
    assert BigQuerySink(store, TABLE, client(recorder)).deliver() == 3
    [(method, url, body)] = recorder.calls
    assert method == "POST" and "/projects/my-project/datasets/recsys/tables/interactions/insertAll" in url
    assert [r["insertId"] for r in body["rows"]] == ids
    first = body["rows"][1]["json"]
    assert first["user_id"] == "u1" and first["interaction_type"] == "rating" and first["rating"] == 4.0
    assert json.loads(first["features"]) == {"request_id": "r1"} and first["timestamp"].endswith("Z")
    assert set(first) == {
        "user_id",
        "item_id",
        "interaction_type",
        "rating",
        "timestamp",
        "category",
        "features",
    }
    assert store.delivered(SINK) == 3


def of_documented_type(value, bigquery_type: str) -> bool:
    """Whether insertAll would take the JSON value for a column of the type (None: NULL)."""
    if value is None:
        return bigquery_type in ("FLOAT", "JSON")  # the nullable columns the rows carry
    if bigquery_type == "TIMESTAMP":
        return (
            isinstance(value, str) and datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
        )
    if bigquery_type == "JSON":
        return isinstance(value, str) and isinstance(json.loads(value), dict)
    expected = {"STRING": str, "INTEGER": int, "FLOAT": float}[bigquery_type]
    return isinstance(value, expected) and not isinstance(value, bool)


def check_documented(rows: list[dict], table: str):
    schema = bigquery_ddl.documented_schema(table)
    for row in rows:
        assert list(row) == list(schema), table  # every documented column, in its order, and no other
        wrong = {c: v for c, v in row.items() if not of_documented_type(v, schema[c])}
        assert wrong == {}, (table, schema)


def test_the_rows_sent_are_those_of_the_tables_docs_deployment_creates(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    store.append(events(4))
    recorder = InsertAllRecorder()
    BigQuerySink(store, "my-project.recsys.feedback", client(recorder)).deliver()
    check_documented([r["json"] for _, _, body in recorder.calls for r in body["rows"]], "recsys.feedback")

    log = impressions.ImpressionLog(str(tmp_path / "fb.sqlite")).open()
    answer = SimpleNamespace(
        request_id="r1",
        user_id="u1",
        model_version="1700000000",
        model_label="canary",
        fallback=None,
        recommendations=[SimpleNamespace(item_id=i) for i in ("a", "b")],
    )
    log.add([impressions.rows_of(answer, "2026-01-01T12:00:00.000000Z")])
    recorder = InsertAllRecorder()
    table = impressions.bigquery_table("my-project.recsys.feedback")
    sink = BigQuerySink(
        log,
        table,
        client(recorder),
        sink=impressions.SINK,
        to_row=impressions.bigquery_row,
        row_id="impression_id",
    )
    assert sink.deliver() == 2
    [(_, url, body)] = recorder.calls
    assert "/datasets/recsys/tables/impressions/insertAll" in url
    assert [r["insertId"] for r in body["rows"]] == ["r1:1", "r1:2"]
    check_documented([r["json"] for r in body["rows"]], "recsys.impressions")
    # partitioned on the column the online metrics' window reads, as the feedback table on its event time
    assert bigquery_ddl.documented_time_partitioning("recsys.impressions") == "served_at"
    assert bigquery_ddl.documented_time_partitioning("recsys.feedback") == "timestamp"


def test_a_failing_bigquery_keeps_events_and_delivers_them_once_in_order_after_recovery(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    ids = store.append(events(5))
    recorder = InsertAllRecorder(failures=2)
    sink = BigQuerySink(store, TABLE, client(recorder), batch_size=3)
    for _ in range(2):
        with pytest.raises(ServiceUnavailable, match="backendError"):
            sink.deliver()
        assert store.delivered(SINK) == 0 and len(store.events()) == 5  # nothing lost, nothing marked
    ids += store.append(events(7, start=5))  # more arrive meanwhile
    while sink.deliver():
        pass
    assert list(recorder.stored) == ids  # every event once, in arrival order
    assert store.delivered(SINK) == 7


def test_a_batch_resent_after_a_crash_before_the_mark_is_deduplicated(tmp_path):
    path = str(tmp_path / "fb.sqlite")
    store = FeedbackStore(path)
    ids = store.append(events(4))
    recorder = InsertAllRecorder()
    sink = BigQuerySink(store, TABLE, client(recorder))
    store.mark_delivered = mock.Mock(side_effect=OSError("killed"))  # the process dies after the insert
    with pytest.raises(OSError):
        sink.deliver()
    store.close()
    restarted = FeedbackStore(path)
    assert BigQuerySink(restarted, TABLE, client(recorder)).deliver() == 4  # sent again with the same ids
    assert len(recorder.calls) == 2 and list(recorder.stored) == ids  # ...and stored once


def test_the_sink_thread_retries_until_delivered(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    ids = store.append(events(3))
    recorder = InsertAllRecorder(failures=1)
    sink = BigQuerySink(store, TABLE, client(recorder), interval=0.05)
    sink.start()
    try:
        deadline = time.monotonic() + 10
        while store.delivered(SINK) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sink.stop()
    assert list(recorder.stored) == ids and len(recorder.calls) == 2


def test_stop_delivers_what_is_left(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    recorder = InsertAllRecorder()
    sink = BigQuerySink(store, TABLE, client(recorder), interval=60)  # the thread would not run in time
    sink.start()
    ids = store.append(events(3))
    sink.stop()
    assert list(recorder.stored) == ids and store.delivered(SINK) == 3


def test_the_backlog_is_measured_after_each_round(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    store.append(events(3))
    recorder = InsertAllRecorder(failures=1_000_000)
    sink = BigQuerySink(store, TABLE, client(recorder), interval=0.05, max_backoff=0.05)
    sink.start()
    try:
        deadline = time.monotonic() + 10
        while sink.backlog_seen != 3:  # BigQuery refuses: the events wait
            assert time.monotonic() < deadline
            time.sleep(0.02)
        recorder.failures = 0
        while sink.backlog_seen != 0:  # delivered
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        sink.stop()
    assert store.delivered(SINK) == 3
