"""Skew of the served traffic from the serving version's training data (proxy/skew.py), with the pure-Python
distances (serving/distances.py) that must measure as TFDV's drift comparators do."""

import contextlib
import io
import random

import httpx
import pandas as pd
import pytest

import cli.main as cli
from serving import distances
from serving.catalog import Catalog, newest_version
from tests import tiny_model
from tests.api_server import post, running_api


def tfdv_statistics(counts: dict):
    import tensorflow_data_validation as tfdv

    values = [value for value, n in counts.items() for _ in range(n)]
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame({"category": values}))


@pytest.mark.parametrize("seed", range(4))
def test_the_distances_are_tfdvs_on_the_same_counts(seed):
    from tfx_pipeline.components import drift

    rng = random.Random(seed)
    values = [f"v{n}" for n in range(rng.randint(2, 60))]
    current, reference = (
        {v: rng.randint(1, 50) for v in rng.sample(values, rng.randint(1, len(values)))} for _ in range(2)
    )
    thresholds = {"l_infinity": 0.2, "jensen_shannon": 0.05}
    expected = drift.compare(tfdv_statistics(current), tfdv_statistics(reference), thresholds, ("category",))
    got = distances.compare({"category": current}, {"category": reference}, thresholds)
    assert [(d["comparator"], d["drift"]) for d in got] == [(d["comparator"], d["drift"]) for d in expected]
    for mine, theirs in zip(got, expected):
        assert mine["distance"] == pytest.approx(theirs["distance"], abs=2e-6), mine["comparator"]


def test_equal_distributions_are_at_distance_zero_and_disjoint_ones_at_one():
    assert distances.l_infinity({"a": 2, "b": 2}, {"a": 5, "b": 5}) == 0
    assert distances.jensen_shannon({"a": 2, "b": 2}, {"a": 5, "b": 5}) == 0
    assert distances.l_infinity({"a": 1}, {"b": 1}) == 1
    assert distances.jensen_shannon({"a": 1}, {"b": 1}) == pytest.approx(1)


def training_events(catalog: Catalog) -> list[str]:
    """One feedback item per training event of the items file: the training distribution itself."""
    return [i.item_id for i in catalog.items.values() for _ in range(i.popularity)]


def skew_of(model_base, tmp_path, feedback_items: list[str], name: str) -> tuple[dict, str]:
    """Serves 12 answers and the feedback events on feedback_items; the API's /monitor/skew and /metrics."""
    with running_api(model_base=model_base, feedback_db=str(tmp_path / f"{name}.sqlite")) as (url, _):
        for n in range(12):
            assert post(url, "/recommend", {"user_id": tiny_model.USERS[n % 3]}).status_code == 200
        for start in range(0, len(feedback_items), 500):
            events = [
                {"user_id": tiny_model.USERS[n % 3], "item_id": item, "feedback_type": "click"}
                for n, item in enumerate(feedback_items[start : start + 500])
            ]
            assert post(url, "/feedback/batch", {"events": events}).status_code == 202
        report = httpx.get(url + "/monitor/skew", params={"hours": 1}, timeout=30).json()
        return report, httpx.get(url + "/metrics", timeout=30).text


def by_source(report: dict) -> dict:
    return {s["source"]: s for s in report["sources"]}


def test_feedback_skewed_from_the_training_data_names_the_feature_and_distance(tiny_model_base, tmp_path):
    catalog = Catalog(f"{tiny_model_base}/{newest_version(tiny_model_base)}")
    # users act only on the rarest category's items, which training saw least
    rare = min(
        {i.category for i in catalog.items.values()},
        key=lambda c: sum(i.popularity for i in catalog.items.values() if i.category == c),
    )
    skewed = [i for i in training_events(catalog) if catalog.items[i].category == rare] * 4
    report, metrics = skew_of(tiny_model_base, tmp_path, skewed, "skewed")
    feedback = by_source(report)["feedback"]
    assert feedback["events"] == len(skewed) >= 100
    over = {(d["feature"], d["comparator"]): d for d in feedback["distances"] if d["drift"]}
    assert set(over) == {(f, c) for f in ("item_id", "category") for c in ("l_infinity", "jensen_shannon")}
    share = sum(i.popularity for i in catalog.items.values() if i.category == rare) / sum(
        i.popularity for i in catalog.items.values()
    )
    assert over["category", "l_infinity"]["distance"] == pytest.approx(1 - share, abs=1e-6)
    assert report["skew"] and report["model_version"] == catalog.version
    [feedback_line] = [part for part in report["summary"].split("; ") if part.startswith("feedback: skew ")]
    assert f"category l_infinity {1 - share:.4f} > 0.1" in feedback_line
    line = (
        f'recsys_skew_distance{{comparator="l_infinity",feature="category",model_version="{catalog.version}",'
        f'source="feedback"}} {over["category", "l_infinity"]["distance"]}'
    )
    assert line in metrics
    # 12 answers of 10 items: the served source has 120 impressions of this version, compared too
    assert by_source(report)["served"]["events"] == 120 and by_source(report)["served"]["distances"]


def test_feedback_distributed_as_the_training_data_is_not_skew(tiny_model_base, tmp_path):
    catalog = Catalog(f"{tiny_model_base}/{newest_version(tiny_model_base)}")
    events = training_events(catalog)
    random.Random(0).shuffle(events)
    report, _ = skew_of(tiny_model_base, tmp_path, events, "unskewed")
    feedback = by_source(report)["feedback"]
    assert feedback["events"] == len(events) and len(feedback["distances"]) == 4
    assert all(d["distance"] == 0 and not d["drift"] for d in feedback["distances"])
    assert "feedback: no skew over the thresholds" in report["summary"]


def test_too_few_events_are_not_compared(tiny_model_base, tmp_path):
    report, metrics = skew_of(tiny_model_base, tmp_path, ["i00"] * 5, "few")
    assert by_source(report)["feedback"] == {"source": "feedback", "events": 5, "distances": []}
    assert "feedback: 5 events, too few to compare (under 100)" in report["summary"]
    assert 'source="feedback"' not in metrics


def test_monitor_report_prints_the_skew(tiny_model_base, tmp_path):
    catalog = Catalog(f"{tiny_model_base}/{newest_version(tiny_model_base)}")
    skew_of(tiny_model_base, tmp_path, ["i39"] * 150, "cli")
    db = str(tmp_path / "cli.sqlite")
    printed = io.StringIO()  # not capsys: the API's server logs to the stderr it found when it started
    with contextlib.redirect_stdout(printed):
        assert (
            cli.main(["monitor", "report", "--db", db, "--model-base", tiny_model_base, "--hours", "1"]) == 0
        )
    out = printed.getvalue()
    assert f"skew from version {catalog.version}'s training data: " in out
    assert "feedback: skew category" in out and "  feedback   item_id     l_infinity 0.9988" in out
