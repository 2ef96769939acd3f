"""The whole local pipeline on sample data, and the pushed model called as a server would call it."""

import collections
import csv
import glob
import json
import os

import pytest
import tensorflow as tf

import contract
import evaluation
from serving import query
from serving.embedded import EmbeddedModel
from serving.history import HistoryStore
from tests import pipeline_nodes
from tfx_pipeline import local_runner
from tfx_pipeline.data import local_source

# In an order the runner must keep (it may interleave the independent ContractSchemaGen and Resolver).
COMPONENTS = [pipeline_nodes.LOCAL_EXAMPLE_GEN, *pipeline_nodes.COMPONENTS, *pipeline_nodes.RESOLVERS]


@pytest.fixture(scope="module")
def model(pipeline_run):
    return EmbeddedModel(pipeline_run["pushed"])


@pytest.fixture(scope="module")
def train_events(sample_split):
    data_dir, _ = sample_split
    with open(os.path.join(data_dir, "interactions.csv"), newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["timestamp"])
    seen = collections.defaultdict(list)
    for r in rows:
        seen[r["user_id"]].append(r["item_id"])
    return seen


def test_every_component_ran_and_the_model_was_pushed_in_tf_serving_layout(pipeline_run):
    started = [line.split(":")[0].removeprefix("[pipeline] ") for line in pipeline_run["lines"][::2]]
    assert sorted(started) == sorted(COMPONENTS)
    for before, after in [
        ("FileBasedExampleGen", "StatisticsGen"),
        ("StatisticsGen", "ExampleValidator"),
        ("ContractSchemaGen", "ExampleValidator"),
        ("ExampleValidator", "AnomaliesGate"),
        ("AnomaliesGate", "Transform"),
        ("previous_statistics", "StatisticsGen"),  # the previous run's, not this one's
        ("StatisticsGen", "DriftCheck"),
        ("DriftCheck", "DriftGate"),
        ("DriftGate", "Transform"),
        ("Transform", "Trainer"),
        ("Trainer", "RefitTrainer"),
        ("RefitTrainer", "Evaluator"),
        ("last_blessed_model", "Evaluator"),
        ("Evaluator", "Pusher"),
    ]:
        assert started.index(before) < started.index(after), (before, after)
    pushed = pipeline_run["pushed"]
    assert os.path.dirname(pushed) == os.path.join(pipeline_run["workdir"], "serving", "recsys")
    assert os.path.basename(pushed).isdigit()
    for graph in ("saved_model.pb", "scann/saved_model.pb"):
        assert os.path.exists(os.path.join(pushed, graph)), graph
    assert os.listdir(os.path.dirname(os.path.dirname(pushed))) == ["recsys"]  # one base, nothing beside it
    report = json.load(open(os.path.join(pushed, contract.EXTRA_DIR, contract.REPORT_FILE)))
    assert report["num_items"] == 200 and report["scann_check_queries"] > 0
    # negatives "auto" (the default) resolved by the catalog's size, as trained
    assert report["hyperparameters"]["negatives"] == "auto" and report["negatives"] == "all_items"
    assert report["train_splits"] == [
        "train",
        "eval",
    ]  # the refit on every event, not the evaluated candidate
    # ... serving the mean of its scores and the candidate's (the default refit): this run's Trainer's model.
    [candidate] = glob.glob(
        os.path.join(pipeline_run["workdir"], "**", "Trainer", "model", "*", "Format-Serving"), recursive=True
    )
    assert report["averaged_with"] == {"model_dir": candidate, "train_splits": ["train"]}
    assert report["warm_started_from"] is None
    assert report["scann_recall_at_10_vs_exact"] >= 0.9


def test_the_evaluator_blessed_the_model_and_its_report_was_pushed_with_it(pipeline_run):
    with open(os.path.join(pipeline_run["pushed"], contract.EXTRA_DIR, contract.EVALUATION_FILE)) as fh:
        report = json.load(fh)
    assert report == pipeline_run["evaluation"]
    assert report["blessed"] is True and "beats most popular" in report["reason"]
    metrics = report["metrics"]
    # The first run: no blessed model to compare with.
    assert set(metrics) == {"most_popular", "ease", "model", evaluation.REFIT}
    assert metrics["model"]["ndcg@10"] > metrics["most_popular"]["ndcg@10"]
    # The refit trained on the eval split's events too: they are no test for it, but it must rank them higher.
    assert metrics[evaluation.REFIT]["ndcg@10"] > metrics["model"]["ndcg@10"]
    # Evaluated: every user with training events and an eval-split item they have no training event for.
    [examples] = glob.glob(
        os.path.join(pipeline_run["workdir"], "**", "FileBasedExampleGen", "examples", "*"), recursive=True
    )
    items = {split: collections.defaultdict(set) for split in ("train", "eval")}
    for split, by_user in items.items():
        for record in tf.data.TFRecordDataset(
            glob.glob(os.path.join(examples, f"Split-{split}", "*")), "GZIP"
        ):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            by_user[feature["user_id"].bytes_list.value[0]].add(feature["item_id"].bytes_list.value[0])
    expected = sum(
        1
        for user, held_out in items["eval"].items()
        if user in items["train"] and held_out - items["train"][user]
    )
    # 1 event in 20 is held out: about half of the 300 users have a held-out item they have not trained on.
    assert metrics["model"]["users"] == metrics["ease"]["users"] == expected > 120


def test_known_user_gets_known_items_with_titles_and_categories(model, train_events):
    user = sorted(train_events)[0]
    [recs] = model.recommend([user], [train_events[user][-20:]], [[]], k=10)
    assert len(recs) == 10
    assert all(item in model.catalog.items for item, _ in recs)
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)
    item = model.catalog.items[recs[0][0]]
    assert item.title.endswith(f"title {int(item.item_id[1:])}") and item.category


def test_unknown_users_with_and_without_history_get_answers(model, train_events):
    history = train_events[sorted(train_events)[1]][-20:]
    with_history, without = model.recommend(["never-seen-1", "never-seen-2"], [history, []], [[], []], k=10)
    assert len(with_history) == len(without) == 10
    assert all(item in model.catalog.items for item, _ in with_history + without)
    # The history is what makes the new user's answer personal.
    assert [i for i, _ in with_history] != [i for i, _ in without]


def test_a_new_interaction_changes_the_next_recommendation(model, train_events):
    user = sorted(train_events)[2]
    history = train_events[user][-20:]
    before = model.recommend([user], [history], [[]], k=10)[0]
    after = model.recommend([user], [history + [before[0][0]] * 5], [[]], k=10)[0]
    assert before != after


def test_excluded_items_are_left_out(model, train_events):
    user = sorted(train_events)[3]
    first = [i for i, _ in model.recommend([user], [[]], [[]], k=10)[0]]
    second = [i for i, _ in model.recommend([user], [[]], [first[:5]], k=10)[0]]
    assert not set(first[:5]) & set(second)
    assert second[:5] == first[5:10]


def test_similar_items_are_known_and_exclude_the_item_itself(model):
    item = sorted(model.catalog.items)[0]
    [similar] = model.similar([item], k=10)
    assert len(similar) == 10 and item not in [i for i, _ in similar]
    assert all(i in model.catalog.items for i, _ in similar)


def test_model_beats_popularity_on_held_out_events(model, sample_split, train_events):
    _, held_out = sample_split
    num_items = len(model.catalog.items)
    model_recall = evaluation.metrics(
        query.recommendations(model, train_events, evaluation.K), held_out, num_items
    )["recall@10"]
    popular_recall = evaluation.metrics(evaluation.most_popular(train_events), held_out, num_items)[
        "recall@10"
    ]
    print(f"recall@10 model {model_recall:.3f} popularity {popular_recall:.3f}")
    assert model_recall >= 1.5 * popular_recall


def test_rerun_with_the_same_data_is_cached_and_pushes_nothing(pipeline_run):
    lines = []
    result = local_runner.run(pipeline_run["data_dir"], pipeline_run["workdir"], echo=lines.append)
    assert result["pushed"] is None
    assert set(result["timings"]) == set(COMPONENTS)
    assert result["timings"]["Trainer"] < 5 and result["timings"]["RefitTrainer"] < 5  # cached: no training


def test_history_store_seeded_from_data_holds_the_last_items_in_time_order(sample_split, train_events):
    data_dir, _ = sample_split
    store = HistoryStore()
    store.add_events(local_source.recent_user_events(data_dir))
    user = sorted(train_events)[0]
    assert store.history(user) == train_events[user][-20:]
    assert store.seen(user) == list(dict.fromkeys(reversed(train_events[user])))
