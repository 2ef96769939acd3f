"""The feedback store on its own: grouped commits and the export in the interactions contract."""

import csv
import json
import sqlite3

import pytest

from proxy.feedback_store import FeedbackStore
from tfx_pipeline.data import local_source

pytestmark = pytest.mark.fast


def event(user, item, kind="click", **extra):
    return {"user_id": user, "item_id": item, "interaction_type": kind, "category": "c", **extra}


def test_grouped_commit_returns_each_groups_ids_in_order(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    groups = [
        [event("a", "1"), event("a", "2")],
        [event("b", "3")],
        [event("c", "4"), event("c", "5"), event("c", "6")],
    ]
    ids = [[event_id for event_id, _ in group] for group in store.accept_groups(groups)]
    assert [len(g) for g in ids] == [2, 1, 3]
    rows = sqlite3.connect(tmp_path / "fb.sqlite").execute(
        "SELECT event_id, user_id, item_id FROM feedback ORDER BY seq"
    )
    assert [(r[1], r[2]) for r in rows] == [
        ("a", "1"),
        ("a", "2"),
        ("b", "3"),
        ("c", "4"),
        ("c", "5"),
        ("c", "6"),
    ]
    assert [e["event_id"] for e in store.events()] == [i for g in ids for i in g]


def test_export_is_a_valid_data_directory_file(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    store.append([event("u1", "i1", request_id="r1"), event("u1", "i2", "rating", rating=4.5)])
    path = store.export(str(tmp_path / "data"))
    rows = list(csv.DictReader(open(path)))
    assert json.loads(rows[0]["features"]) == {"request_id": "r1"} and rows[1]["rating"] == "4.5"
    con = local_source.open_data_dir(str(tmp_path / "data"))  # passes the contract checks
    assert con.execute("SELECT count(*) FROM interactions").fetchone() == (2,)


def rows(path):
    return (
        sqlite3.connect(path)
        .execute("SELECT event_id, item_id, idempotency_key FROM feedback ORDER BY seq")
        .fetchall()
    )


def test_a_retry_with_the_same_idempotency_key_returns_the_first_id_and_stores_nothing(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    [(first, stored)] = store.accept([event("a", "1", idempotency_key="k1")])
    assert stored
    assert store.accept([event("a", "1", idempotency_key="k1")]) == [(first, False)]
    assert store.append([event("a", "1", idempotency_key="k1")]) == [first]
    assert rows(tmp_path / "fb.sqlite") == [(first, "1", "k1")]


def test_different_keys_and_no_key_store_separate_events(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    ids = store.append(
        [
            event("a", "1", idempotency_key="k1"),
            event("a", "1", idempotency_key="k2"),
            event("a", "1"),
            event("a", "1"),
        ]
    )
    assert len(set(ids)) == 4 and [r[0] for r in rows(tmp_path / "fb.sqlite")] == ids


def test_a_duplicate_key_within_one_batch_and_across_grouped_requests(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    [batch] = store.accept_groups(
        [[event("a", "1", idempotency_key="k"), event("a", "2"), event("a", "1", idempotency_key="k")]]
    )
    assert batch[0][1] and batch[1][1] and batch[2] == (batch[0][0], False)
    # Two concurrent requests (one transaction through the Batcher) that carry the same new key.
    one, two = store.accept_groups(
        [[event("b", "3", idempotency_key="k2")], [event("b", "3", idempotency_key="k2")]]
    )
    assert one[0][1] and two == [(one[0][0], False)]
    assert store.accept_groups([[event("a", "1", idempotency_key="k")]]) == [[(batch[0][0], False)]]
    assert [r[1] for r in rows(tmp_path / "fb.sqlite")] == ["1", "2", "3"]


def test_idempotency_keys_survive_a_restart(tmp_path):
    path = str(tmp_path / "fb.sqlite")
    store = FeedbackStore(path)
    [first] = store.append([event("a", "1", idempotency_key="k1")])
    store.close()
    restarted = FeedbackStore(path)
    assert restarted.accept([event("a", "1", idempotency_key="k1")]) == [(first, False)]
    assert len(rows(path)) == 1


def test_a_database_from_before_idempotency_keys_is_migrated(tmp_path):
    path = str(tmp_path / "fb.sqlite")
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE feedback (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
          user_id TEXT NOT NULL, item_id TEXT NOT NULL, interaction_type TEXT NOT NULL, rating REAL,
          timestamp TEXT NOT NULL, category TEXT NOT NULL, request_id TEXT, received_at TEXT NOT NULL);
        INSERT INTO feedback (event_id, user_id, item_id, interaction_type, timestamp, category, received_at)
          VALUES ('old', 'a', '1', 'click', '2024-05-01T00:00:00.000000Z', 'c',
                  '2024-05-01T00:00:00.000000Z');""")
    old.close()
    store = FeedbackStore(path)
    [new] = store.append([event("a", "2", idempotency_key="k1")])
    assert store.append([event("a", "2", idempotency_key="k1")]) == [new]
    assert rows(path) == [("old", "1", None), (new, "2", "k1")]
    with sqlite3.connect(path) as con, pytest.raises(sqlite3.IntegrityError):  # the index enforces it too
        con.execute("UPDATE feedback SET idempotency_key = 'k1' WHERE event_id = 'old'")
    store.close()
    assert len(FeedbackStore(path).events()) == 2  # opening a migrated database again changes nothing
