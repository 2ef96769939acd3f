"""The feedback store on its own: grouped commits and the export in the interactions contract."""

import csv
import json
import sqlite3

from proxy.feedback_store import FeedbackStore
from tfx_pipeline.data import local_source


def event(user, item, kind="click", **extra):
    return {"user_id": user, "item_id": item, "interaction_type": kind, "category": "c", **extra}


def test_grouped_commit_returns_each_groups_ids_in_order(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    groups = [[event("a", "1"), event("a", "2")], [event("b", "3")], [event("c", "4"), event("c", "5"), event("c", "6")]]
    ids = store.append_groups(groups)
    assert [len(g) for g in ids] == [2, 1, 3]
    rows = sqlite3.connect(tmp_path / "fb.sqlite").execute("SELECT event_id, user_id, item_id FROM feedback ORDER BY seq")
    assert [(r[1], r[2]) for r in rows] == [("a", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("c", "5"), ("c", "6")]
    assert [e["event_id"] for e in store.events()] == [i for g in ids for i in g]


def test_export_is_a_valid_data_directory_file(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.sqlite"))
    store.append([event("u1", "i1", request_id="r1"), event("u1", "i2", "rating", rating=4.5)])
    path = store.export(str(tmp_path / "data"))
    rows = list(csv.DictReader(open(path)))
    assert json.loads(rows[0]["features"]) == {"request_id": "r1"} and rows[1]["rating"] == "4.5"
    con = local_source.open_data_dir(str(tmp_path / "data"))  # passes the contract checks
    assert con.execute("SELECT count(*) FROM interactions").fetchone() == (2,)
