"""The evaluation protocol's parts: the split, the metrics and the baselines."""

import csv
import math
import os
import types

import numpy as np
import pytest

import evaluation
from serving import query
from tfx_pipeline.data import sample

pytestmark = pytest.mark.fast


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


def _results(model, popular, baseline=None, refit=None):
    results = {"most_popular": {"ndcg@10": popular}, "model": {"ndcg@10": model}}
    for name, value in (("baseline_model", baseline), (evaluation.REFIT, refit)):
        if value is not None:
            results[name] = {"ndcg@10": value}
    return results


@pytest.mark.parametrize(
    "results, blessed, why",
    [
        (_results(0.30, 0.20), True, "beats most popular"),
        (_results(0.20, 0.20), False, "does not beat most popular"),  # a tie is not better
        (_results(0.30, 0.20, baseline=0.31), True, "last blessed model had 0.3100"),  # within 5 %
        (_results(0.29, 0.20, baseline=0.31), False, "more than 5% below the last blessed model"),
        (_results(0.35, 0.40, baseline=0.30), False, "does not beat most popular"),
        (_results(0.30, 0.20, refit=0.45), True, "beats most popular"),
        (
            _results(0.30, 0.20, refit=0.20),
            False,
            "the refit model's ndcg@10 0.2000 does not beat most popular",
        ),
    ],
)
def test_blessing_needs_popularity_beaten_by_both_models_and_no_regression_past_the_margin(
    results, blessed, why
):
    verdict, reason = evaluation.bless(results, max_regression=0.05)
    assert verdict is blessed and why in reason


class _Ranks:
    """A model that answers every user with the same ranking (the recommend() of EmbeddedModel), leaving out
    what it is asked to, and records what it was asked."""

    def __init__(self, ranking, max_exclusions=400):
        self.ranking = ranking
        self.catalog = types.SimpleNamespace(max_exclusions=max_exclusions)
        self.excluded = []

    def recommend(self, users, histories, exclude, k):
        self.excluded += exclude
        return [[(item, 1.0) for item in self.ranking if item not in left_out][:k] for left_out in exclude]


def test_symmetric_inverse_is_the_inverse_and_refuses_a_matrix_that_is_not_positive_definite():
    rng = np.random.default_rng(0)
    x = (rng.random((40, 30)) < 0.2).astype(np.float32)
    gram = x.T @ x + 2.0 * np.eye(30, dtype=np.float32)
    inverse = evaluation.symmetric_inverse(gram)
    np.testing.assert_allclose(inverse, np.linalg.inv(gram), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(inverse, inverse.T)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        evaluation.symmetric_inverse(np.array([[1.0, 2.0], [2.0, 1.0]], np.float32))


def test_compare_scores_every_method_on_the_same_users_and_skips_ease_on_big_catalogs(monkeypatch):
    train = {f"u{n}": ["a", "b"] for n in range(5)} | {"w": ["a"]}
    test = {"w": {"b"}, "u0": {"c"}}
    model = query.recommendations(_Ranks(["c", "b", "a"]), train, evaluation.K)
    results = evaluation.compare(train, test, {"model": model})
    assert set(results) == {"most_popular", "ease", "model"}
    assert results["model"]["hit@10"] == 1.0 and all(r["users"] == 2 for r in results.values())
    monkeypatch.setattr(evaluation, "EASE_MAX_ITEMS", 2)
    assert set(evaluation.compare(train, test, {})) == {"most_popular"}


def test_a_model_is_asked_to_leave_out_no_more_than_its_own_limit_and_older_seen_items_are_dropped():
    # An older pushed model may take fewer exclusions than this code's default (its export hyperparameters).
    model = _Ranks(["a", "b", "c", "d", "e"], max_exclusions=2)
    recommended = query.recommendations(model, {"u": ["a", "b", "c"]}, evaluation.K)  # oldest first
    assert model.excluded == [["c", "b"]]  # the two most recent
    assert recommended == {"u": ["d", "e"]}  # "a", seen but not excluded, is dropped from the answer


def test_report_gives_ratios_to_the_baselines_but_none_for_the_refit_which_saw_the_events():
    results = {
        name: {"recall@10": recall, "ndcg@10": ndcg, "users": 3}
        for name, recall, ndcg in (
            ("most_popular", 0.1, 0.2),
            ("ease", 0.2, 0.4),
            ("model", 0.3, 0.4),
            (evaluation.REFIT, 0.6, 0.8),
        )
    }
    lines = evaluation.report(results).splitlines()
    assert lines[0] == "| method | recall@10 | ndcg@10 |"
    assert f"| {evaluation.REFIT} | 0.6000 | 0.8000 |" in lines
    assert "| model / most_popular | 3.00x | 2.00x |" in lines and "| model / ease | 1.50x | 1.00x |" in lines
    assert not any(line.startswith(f"| {evaluation.REFIT} /") for line in lines)
    assert lines[-1].startswith(f"({evaluation.REFIT}: the model pushed if blessed")
    # Without a refit (hyperparameter refit "none") the table says nothing of one.
    del results[evaluation.REFIT]
    assert evaluation.REFIT not in evaluation.report(results)


def test_the_inputs_fingerprint_ignores_event_order_and_changes_with_any_event_or_the_recipe():
    fingerprint = evaluation.inputs_fingerprint
    events = [("u1", 10, "i1", "view", 0.0, "drama"), ("u2", 11, "i2", "rating", 4.0, "comedy")]
    same = fingerprint(events, "recipe")
    assert fingerprint(events[::-1], "recipe") == same
    assert fingerprint(events, "another recipe") != same
    assert fingerprint(events[:1], "recipe") != same
    assert fingerprint([events[0], ("u2", 11, "i2", "rating", 5.0, "comedy")], "recipe") != same
