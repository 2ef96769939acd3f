"""Impressions, the online metrics' SQL (on SQLite, and as BigQuery SQL run through sqlglot on DuckDB) and the
A/B report's statistics, without a model."""

import asyncio
import json
import random
import sqlite3
from types import SimpleNamespace

import duckdb
import pytest
import sqlglot

from proxy import ab_report, impressions, online_metrics
from proxy.feedback_store import FeedbackStore
from tests import bigquery_ddl

SINCE, UNTIL = "2026-01-01T00:00:00.000000Z", "2026-01-02T00:00:00.000000Z"
FEEDBACK_TABLE = "proj-1.recsys.feedback"


def response(request_id, user, items, version="100", label="stable", fallback=None):
    return SimpleNamespace(
        request_id=request_id,
        user_id=user,
        model_version=version,
        model_label=label,
        fallback=fallback,
        recommendations=[SimpleNamespace(item_id=i) for i in items],
    )


SERVED = [
    response("r1", "u1", ["a", "b", "c"]),  # click at position 2 and a purchase: a click and a conversion
    response("r2", "u2", ["a", "d", "e"]),  # a view only: neither
    response("r3", "u3", ["b", "c", "f"], version="101", label="canary"),  # click at position 3 (outside k=2)
    response("r4", "u4", ["f", "g", "h"], version="101", label="canary", fallback="popularity"),  # like at 1
]
FEEDBACK = [
    ("u1", "b", "click", "r1"),
    ("u1", "b", "purchase", "r1"),
    ("u2", "d", "view", "r2"),
    ("u3", "f", "click", "r3"),
    ("u4", "f", "like", "r4"),
    ("u4", "z", "like", "r4"),  # an item the list did not have: not a click on it
    ("u9", "a", "click", None),  # no request: joins nothing
]
EXPECTED = [  # k = 2
    ("100", "stable", 2, 1, 1, 0, 3),
    ("101", "canary", 2, 1, 0, 1, 4),
]


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "feedback.sqlite")
    store = FeedbackStore(path)
    store.accept(
        [
            dict(user_id=u, item_id=i, interaction_type=t, request_id=r, category="", timestamp=None)
            for u, i, t, r in FEEDBACK
        ]
    )
    log = impressions.ImpressionLog(path).open()
    log.add([impressions.rows_of(r, "2026-01-01T12:00:00.000000Z") for r in SERVED])
    log.add([impressions.rows_of(SERVED[0], "2026-01-01T12:00:00.000000Z")])  # a retry is stored once
    log.add([impressions.rows_of(response("old", "u1", ["a"]), "2025-12-31T23:59:59.000000Z")])  # outside
    log.close()
    store.close()
    return path


def test_metrics_per_version_and_variant_on_sqlite(db):
    rows = online_metrics.local_metrics(db, SINCE, UNTIL, k=2, catalog_size=8)
    assert [
        (r.model_version, r.variant, r.requests, r.clicks, r.conversions, r.fallbacks, r.items) for r in rows
    ] == EXPECTED
    stable, canary = rows
    assert (stable.ctr, stable.conversion, stable.fallback_share, stable.coverage) == (0.5, 0.5, 0.0, 3 / 8)
    assert (canary.ctr, canary.fallback_share, canary.coverage) == (0.5, 0.5, 0.5)
    at_3 = online_metrics.local_metrics(db, SINCE, UNTIL, k=3)
    assert [r.clicks for r in at_3] == [1, 2] and at_3[0].coverage is None  # r3's click at 3 counts now


def test_the_same_query_on_bigquery_runs_through_sqlglot_on_duckdb(db):
    """The BigQuery form (feedback in the contract's columns, the request id in `features`) transpiled by
    sqlglot from BigQuery's dialect to DuckDB's, over the same rows as BigQuery would hold them."""
    import sqlite3

    sql = online_metrics.bigquery_query(FEEDBACK_TABLE)
    sqlglot.parse_one(sql, read="bigquery")  # valid BigQuery
    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS \"proj-1\"")
    con.execute('CREATE SCHEMA "proj-1".recsys')
    for table in ("feedback", "impressions"):  # as docs/deployment.md creates them
        con.execute(bigquery_ddl.duckdb_table(f'"proj-1".recsys.{table}', f"recsys.{table}"))
    with sqlite3.connect(db) as local:
        for u, i, t, r in FEEDBACK:
            con.execute(
                "INSERT INTO \"proj-1\".recsys.feedback VALUES (?, ?, ?, NULL, now(), '', ?)",
                [u, i, t, json.dumps({"request_id": r}) if r else None],
            )
        for row in local.execute(f"SELECT {', '.join(impressions.COLUMNS)} FROM impressions"):
            con.execute(
                'INSERT INTO "proj-1".recsys.impressions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', list(row)
            )
    [duck_sql] = sqlglot.transpile(sql, read="bigquery", write="duckdb")
    rows = con.execute(
        duck_sql, {"since": SINCE.replace("Z", ""), "until": UNTIL.replace("Z", ""), "k": 2}
    ).fetchall()
    assert [tuple(int(v) if isinstance(v, (int, float)) else v for v in row) for row in rows] == EXPECTED


def test_sampling_keeps_a_share_of_requests_the_same_everywhere(tmp_path):
    ids = [f"req-{n}" for n in range(4000)]
    kept = [i for i in ids if impressions.sampled(i, 0.25)]
    assert 0.22 < len(kept) / len(ids) < 0.28
    assert kept == [i for i in ids if impressions.sampled(i, 0.25)]
    assert all(impressions.sampled(i, 1.0) for i in ids) and not any(impressions.sampled(i, 0.0) for i in ids)
    log = impressions.ImpressionLog(str(tmp_path / "f.sqlite"), sample_rate=0.25).open()

    async def record():
        for n in range(0, 400, 10):
            log.record([response(i, "u", ["a", "b"]) for i in ids[n : n + 10]])
        await log.flush()

    asyncio.run(record())
    stored = {row["request_id"] for row in log.events()}
    assert stored == {i for i in ids[:400] if impressions.sampled(i, 0.25)}
    assert len(log.events()) == 2 * len(stored)
    with pytest.raises(ValueError, match="outside 0..1"):
        impressions.ImpressionLog("x", sample_rate=1.5)


def test_newcombe_interval_matches_the_papers_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 against 48/80, interval 0.0524 to
    # 0.3339
    low, high = ab_report.newcombe(ab_report.Arm("a", (), 80, 48), ab_report.Arm("b", (), 70, 56), 1.959964)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_ab_report_names_the_winner_or_says_there_is_not_enough_data():
    rng = random.Random(1)

    def arm(variant, n, rate):
        return ab_report.Arm(variant, ("1",), n, sum(rng.random() < rate for _ in range(n)))

    clear = ab_report.compare(arm("stable", 2000, 0.10), arm("canary", 2000, 0.14))
    assert clear.winner == "canary" == clear.verdict and clear.p_value < 0.001
    assert 0 < clear.interval[0] < clear.difference < clear.interval[1]
    assert "winner canary" in ab_report.describe(clear) and "95% interval" in ab_report.describe(clear)
    same = ab_report.compare(arm("stable", 2000, 0.10), arm("canary", 2000, 0.10))
    assert same.verdict == ab_report.NO_DIFFERENCE and same.winner is None
    small = ab_report.compare(arm("stable", 99, 0.5), arm("canary", 500, 0.5))
    assert small.verdict == ab_report.NOT_ENOUGH_DATA and small.interval is None
    few_clicks = ab_report.compare(ab_report.Arm("stable", (), 500, 9), ab_report.Arm("canary", (), 500, 60))
    assert few_clicks.verdict == ab_report.NOT_ENOUGH_DATA
    assert "not enough data (each variant needs at least 100 requests" in ab_report.describe(few_clicks)
    none = ab_report.report([])  # the in-process model: no variants at all
    assert none.verdict == ab_report.NOT_ENOUGH_DATA
    assert "no answers from the variants stable and canary" in ab_report.describe(none)
    with pytest.raises(ValueError, match="metric"):
        ab_report.report([], metric="ndcg")


def test_a_failed_impression_write_is_logged_and_the_answer_goes_out(tmp_path, caplog):
    log = impressions.ImpressionLog(str(tmp_path / "f.sqlite")).open()
    log._db.execute("DROP TABLE impressions")

    async def serve():
        log.record([response("r1", "u1", ["a"])])
        await log.flush()  # no exception

    asyncio.run(serve())
    assert "impressions not recorded: no such table: impressions" in caplog.text


def test_an_answer_does_not_wait_for_its_impressions_write_and_a_flush_does(tmp_path):
    path = str(tmp_path / "f.sqlite")
    log = impressions.ImpressionLog(path).open()
    other_writer = sqlite3.connect(path, isolation_level=None)
    other_writer.execute("BEGIN IMMEDIATE")  # holds the file's write lock

    async def serve():
        log.record([response("r1", "u1", ["a", "b"])])  # returns at once: the answer goes out
        flushed = asyncio.ensure_future(log.flush())
        await asyncio.sleep(0.5)
        assert not flushed.done()  # the write waits for the lock, and flush() for the write
        other_writer.execute("ROLLBACK")
        await asyncio.wait_for(flushed, 10)

    asyncio.run(serve())
    assert [(r["request_id"], r["item_id"]) for r in log.events()] == [("r1", "a"), ("r1", "b")]
