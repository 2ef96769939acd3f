"""Skew: how far the traffic the API served, and what users did, is from the training data of the model
version serving, on the item and category distributions, with TFDV's distances (serving/distances.py, the
same definitions and thresholds as the pipeline's drift check).

Two sources over a time window, each compared with the training events the served version's items file counts
(per item, and per category through the items' categories):
  served    the impressions of that version (the items shown, and their categories)
  feedback  the feedback events received (the items users acted on, and their categories)

The API computes it when asked, for the version it serves: skew is a property of a pushed version (one
pipeline run's model) against live traffic that keeps coming after the run, so it is read where the traffic
and the version meet rather than frozen into the run that pushed it."""

import contextlib
import functools
import os
import sqlite3
from collections import Counter

import contract
from proxy import online_metrics, redis_store
from serving import distances
from serving.catalog import Catalog

MIN_EVENTS = 100  # fewer events than this from a source: its distributions are noise, not evidence of skew
FEATURES = (contract.ITEM_ID, contract.CATEGORY)
SOURCES = {
    "served": "SELECT item_id FROM impressions WHERE model_version = :version "
    "AND served_at >= :since AND served_at < :until",
    "feedback": "SELECT item_id FROM feedback WHERE received_at >= :since AND received_at < :until",
}


def training_counts(catalog: Catalog) -> dict[str, Counter]:
    """The training events per item and per category of a pushed version (its items file)."""
    items, categories = Counter(), Counter()
    for item in catalog.items.values():
        items[item.item_id] += item.popularity
        categories[item.category] += item.popularity
    return {contract.ITEM_ID: items, contract.CATEGORY: categories}


def counts_of(item_ids: list[str], catalog: Catalog) -> dict[str, Counter]:
    """Events per item and per category (the catalog's; '' for an item it does not know)."""
    known = catalog.items
    return {
        contract.ITEM_ID: Counter(item_ids),
        contract.CATEGORY: Counter(known[i].category if i in known else "" for i in item_ids),
    }


def source(db_path: str, store_url: str | None):
    """traffic(version, since, until) of the API's settings: the shared store's monitor streams with `--store`
    (every instance's answers and events), else the SQLite file holding impressions and feedback."""
    if store_url:
        return functools.partial(shared_traffic, store_url)
    return functools.partial(traffic, db_path)


def shared_traffic(store_url: str, version: str, since: str, until: str) -> dict[str, list[str]]:
    """The item ids of each source in the window, from the shared store's monitor streams."""
    until_ms = online_metrics.milliseconds(until)
    rows, events = redis_store.monitor_rows(store_url, online_metrics.milliseconds(since), until_ms)
    return {
        "served": [r["item_id"] for r in rows if r["model_version"] == version],
        "feedback": [e["item_id"] for e in events if e["received_ms"] < until_ms],
    }


def traffic(db_path: str, version: str, since: str, until: str) -> dict[str, list[str]]:
    """The item ids of each source in the window, from the SQLite file holding impressions and feedback."""
    found = {source: [] for source in SOURCES}
    if not os.path.exists(db_path):
        return found
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for source, sql in SOURCES.items():
            table = "impressions" if source == "served" else "feedback"
            if table in tables:
                params = {"version": version, "since": since, "until": until}
                found[source] = [row[0] for row in db.execute(sql, params)]
    return found


def report(catalog: Catalog, traffic_items: dict[str, list[str]], thresholds: dict) -> dict:
    """{"model_version", "thresholds", "sources": [{"source", "events", "distances"}], "skew"}: the distances
    of each source with at least MIN_EVENTS events (none under it)."""
    reference = training_counts(catalog)
    sources = []
    for source, items in traffic_items.items():
        compared = (
            distances.compare(counts_of(items, catalog), reference, thresholds)
            if len(items) >= MIN_EVENTS
            else []
        )
        sources.append({"source": source, "events": len(items), "distances": compared})
    return {
        "model_version": catalog.version,
        "thresholds": thresholds,
        "min_events": MIN_EVENTS,
        "sources": sources,
        "skew": any(d["drift"] for s in sources for d in s["distances"]),
    }


def describe(skew: dict) -> str:
    """One line: the distances over their thresholds, or why there are none."""
    lines = []
    for s in skew["sources"]:
        over = [d for d in s["distances"] if d["drift"]]
        if s["events"] < skew["min_events"]:
            lines.append(
                f"{s['source']}: {s['events']} events, too few to compare (under {skew['min_events']})"
            )
        elif over:
            lines.append(
                f"{s['source']}: skew "
                + ", ".join(
                    f"{d['feature']} {d['comparator']} {d['distance']:.4f} > {d['threshold']}" for d in over
                )
            )
        else:
            lines.append(f"{s['source']}: no skew over the thresholds ({s['events']} events)")
    return f"skew from version {skew['model_version']}'s training data: " + "; ".join(lines)
