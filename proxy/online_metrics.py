"""Online metrics per model version and variant, from what the API served (proxy/impressions.py) joined with
the feedback that names the request it answered (request_id), over a time window.

Per (model_version, variant), over the requests served in [@since, @until):
  requests        requests recorded (the sampled ones)
  clicks          requests with a click, like, cart_add or purchase on an item shown at a position <= @k
  conversions     requests with a purchase of an item shown at a position <= @k
  fallbacks       requests answered by the popularity fallback
  items           distinct items shown at positions <= @k
ctr@k = clicks / requests, conversion@k = conversions / requests, fallback share = fallbacks / requests,
coverage@k = items / the catalog's items.

METRICS_SQL is one query for both stores: SQLite here (named @parameters, which SQLite binds) and BigQuery
(query parameters of the same names). Only the two relations it reads differ: `impressions` is a table of the
same columns in both, `responses` (request_id, item_id, interaction_type of each feedback event) is a view
over the feedback table, whose BigQuery form reads the request id from the contract's `features` JSON.
"""

import contextlib
import functools
import os
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime

from proxy import impressions, redis_store

CLICK_TYPES = ("click", "like", "cart_add", "purchase")
CONVERSION_TYPE = "purchase"

RESPONSES_SQLITE = "SELECT request_id, item_id, interaction_type FROM feedback WHERE request_id IS NOT NULL"
RESPONSES_BIGQUERY = (
    "SELECT JSON_VALUE(features, '$.request_id') AS request_id, item_id, interaction_type "
    "FROM `{feedback_table}` "
    "WHERE JSON_VALUE(features, '$.request_id') IS NOT NULL"
)
_CLICKS = ", ".join(f"'{t}'" for t in CLICK_TYPES)
METRICS_SQL = f"""  -- {{impressions}}: the impressions table's name
WITH served AS (
  SELECT request_id, model_version, variant, fallback, position, item_id
  FROM {{impressions}}
  WHERE served_at >= @since AND served_at < @until
),
requests AS (
  SELECT request_id, model_version, variant, MAX(fallback) AS fallback
  FROM served
  GROUP BY request_id, model_version, variant
),
outcomes AS (
  SELECT s.request_id,
         MAX(CASE WHEN r.interaction_type IN ({_CLICKS}) THEN 1 ELSE 0 END) AS clicked,
         MAX(CASE WHEN r.interaction_type = '{CONVERSION_TYPE}' THEN 1 ELSE 0 END) AS converted
  FROM served AS s
  JOIN responses AS r ON r.request_id = s.request_id AND r.item_id = s.item_id
  WHERE s.position <= @k
  GROUP BY s.request_id
),
shown AS (
  SELECT model_version, variant, COUNT(DISTINCT item_id) AS items
  FROM served
  WHERE position <= @k
  GROUP BY model_version, variant
)
SELECT q.model_version,
       q.variant,
       COUNT(*) AS requests,
       SUM(COALESCE(o.clicked, 0)) AS clicks,
       SUM(COALESCE(o.converted, 0)) AS conversions,
       SUM(q.fallback) AS fallbacks,
       MAX(COALESCE(sh.items, 0)) AS items
FROM requests AS q
LEFT JOIN outcomes AS o ON o.request_id = q.request_id
LEFT JOIN shown AS sh ON sh.model_version = q.model_version AND sh.variant = q.variant
GROUP BY q.model_version, q.variant
ORDER BY q.model_version, q.variant
"""


def query(responses: str = RESPONSES_SQLITE, impressions: str = "impressions") -> str:
    """METRICS_SQL over the given `responses` relation and impressions table."""
    body = METRICS_SQL.split("\n", 1)[1].replace("{impressions}", impressions)
    return f"WITH responses AS ({responses}),\n" + body.removeprefix("WITH ")


def bigquery_query(feedback_table: str) -> str:
    """The query for BigQuery (parameters @since, @until as TIMESTAMP, @k as INT64), over the feedback table
    project.dataset.table and the impressions table beside it."""
    return query(
        RESPONSES_BIGQUERY.format(feedback_table=feedback_table),
        f"`{impressions.bigquery_table(feedback_table)}`",
    )


@dataclass(frozen=True)
class VersionMetrics:
    model_version: str
    variant: str
    requests: int
    clicks: int
    conversions: int
    fallbacks: int
    items: int
    ctr: float
    conversion: float
    fallback_share: float
    coverage: float | None  # None: the catalog's size is not known

    def as_dict(self) -> dict:
        return asdict(self)


def metrics_from_rows(rows: list[tuple], catalog_size: int | None) -> list[VersionMetrics]:
    """VersionMetrics from METRICS_SQL's rows."""
    return [
        VersionMetrics(
            str(version),
            variant,
            requests,
            clicks,
            conversions,
            fallbacks,
            items,
            ctr=clicks / requests,
            conversion=conversions / requests,
            fallback_share=fallbacks / requests,
            coverage=items / catalog_size if catalog_size else None,
        )
        for version, variant, requests, clicks, conversions, fallbacks, items in rows
    ]


def source(db_path: str, store_url: str | None):
    """metrics(since, until, k, catalog_size) of the API's settings: over the shared store's monitor streams
    with `--store` (every instance's answers), else over the SQLite file holding impressions and feedback."""
    if store_url:
        return functools.partial(shared_metrics, store_url)
    return functools.partial(local_metrics, db_path)


def shared_metrics(
    store_url: str, since: str, until: str, k: int = 10, catalog_size: int | None = None
) -> list[VersionMetrics]:
    """The metrics over every instance's answers and the events naming them (received up to now, as the
    feedback table is read), from the shared store's monitor streams in an in-memory SQLite database, by the
    same SQL."""
    rows, events = redis_store.monitor_rows(store_url, milliseconds(since), milliseconds(until))
    responses = [(e["request_id"], e["item_id"], e["interaction_type"]) for e in events if e["request_id"]]
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        db.executescript(impressions.SCHEMA)
        db.executemany(impressions.INSERT_SQL, [tuple(r[c] for c in impressions.COLUMNS) for r in rows])
        db.execute("CREATE TABLE shared_responses (request_id TEXT, item_id TEXT, interaction_type TEXT)")
        db.executemany("INSERT INTO shared_responses VALUES (?, ?, ?)", responses)
        result = db.execute(
            query("SELECT request_id, item_id, interaction_type FROM shared_responses"),
            {"since": since, "until": until, "k": k},
        ).fetchall()
    return metrics_from_rows(result, catalog_size)


def milliseconds(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def local_metrics(
    db_path: str, since: str, until: str, k: int = 10, catalog_size: int | None = None
) -> list[VersionMetrics]:
    """The metrics from the SQLite file holding feedback and impressions (ISO 8601 UTC bounds)."""
    if not os.path.exists(db_path):
        return []
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"impressions", "feedback"} <= tables:
            return []
        rows = db.execute(query(RESPONSES_SQLITE), {"since": since, "until": until, "k": k}).fetchall()
    return metrics_from_rows(rows, catalog_size)
