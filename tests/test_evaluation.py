"""The evaluation protocol's parts: the split, the metrics and the baselines."""

import csv
import math
import os

import pytest

from tfx_pipeline import evaluation
from tfx_pipeline.data import sample


def test_metrics_by_hand():
    recommended = {"a": ["x", "y", "z"], "b": ["q", "r", "s"]}
    test = {"a": {"y"}, "b": {"nothing"}}
    m = evaluation.metrics(recommended, test, num_items=10, k=3)
    assert m["precision@3"] == pytest.approx((1 / 3 + 0) / 2)
    assert m["recall@3"] == pytest.approx(0.5)
    assert m["hit@3"] == pytest.approx(0.5)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3)) / 2)  # a's hit at rank 2, ideal 1
    assert m["coverage"] == pytest.approx(0.6) and m["users"] == 2


def test_split_is_per_user_75_25_reproducible_and_disjoint(tmp_path):
    sample.generate(str(tmp_path / "data"), users=30, items=40, events=1200, seed=5)
    evaluation.split_per_user(str(tmp_path / "data"), str(tmp_path / "s1"))
    evaluation.split_per_user(str(tmp_path / "data"), str(tmp_path / "s2"))
    assert open(tmp_path / "s1" / "test.csv").read() == open(tmp_path / "s2" / "test.csv").read()
    with open(tmp_path / "data" / "interactions.csv") as fh:
        total = sum(1 for _ in csv.DictReader(fh))
    with open(tmp_path / "s1" / "test.csv") as fh:
        test_rows = list(csv.DictReader(fh))
    assert abs(len(test_rows) / total - 0.25) < 0.02
    train, test = evaluation.load_split(str(tmp_path / "s1"))
    assert set(test) <= set(train) and len(train) == 30  # every user keeps training events
    assert os.path.exists(tmp_path / "s1" / "train" / "items.csv")


def test_ease_and_popularity_leave_out_training_items_and_ease_uses_co_occurrence():
    # Users who took "a" also took "b"; "c" is the most popular overall.
    train = {f"u{n}": ["a", "b"] for n in range(5)} | {f"v{n}": ["c", "d"] for n in range(8)} | {"new": ["a"]}
    popular = evaluation.most_popular(train, k=1)
    assert popular["new"] == ["c"]
    assert evaluation.ease(train, k=1, l2=1.0)["new"] == ["b"]
    assert all(i not in train[u] for u, recs in evaluation.ease(train, k=2, l2=1.0).items() for i in recs)
