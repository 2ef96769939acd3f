"""Fast screening of training recipes on a `recsys benchmark quality` split, outside the pipeline.

Usage: .venv/bin/python -m benchmarks.model_screen [--split build/q1/split] [--hparams JSON]
       [--no-determinism]
Trains the product's model (trainer_module.model.compiled_model: TwoTowerModel with its optimizer, fitted on
the Trainer's in-memory batches) with the given hyperparameters, the candidate and then the refit as
HParams.refit says (a warm start goes on with the candidate's model object, where the pipeline restores it
from a checkpoint), and prints nDCG@10 after every epoch of each, the refit's also averaged with the
candidate's scores (what refit "full" serves), with the same metrics code and protocol as `recsys evaluate`
(each user's training items left out, the latest 20 training items as the query's history), and the
baselines'.

What it leaves out of the pipeline, to be fast: ExampleGen, Transform and the export. It builds the examples
the way they do (each event's history: up to 20 of the user's other items in a fixed pseudo-random order;
1 event in 20 held out by its timestamp, as the eval split) with its own hash (md5 where the pipeline has
FARM_FINGERPRINT and TFX's split hash), so the held-out events differ from a pipeline run's. It scores every
item with the model's vectors where the pipeline goes through the serving signature (and, when averaged, a
projection). It is a screen: recipes that win here are then run through the pipeline (`recsys benchmark
quality`), and only those numbers count as results (BENCHMARKS.md).
"""

import argparse
import csv
import hashlib
import json
import os
import time
from collections import Counter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import contract  # noqa: E402
import evaluation  # noqa: E402
from trainer_module.hparams import HParams  # noqa: E402
from trainer_module.model import compiled_model  # noqa: E402
from trainer_module.task import in_memory_batches, steps_per_epoch  # noqa: E402

EVAL_BUCKETS = 20  # ExampleGen's split: 19 hash buckets train, 1 eval


def _hash(text: str) -> int:
    return int(hashlib.md5(text.encode()).hexdigest()[:15], 16)


def load(split: str):
    """The split's training events as the Trainer's in-memory tensors (the candidate's part, without the
    held-out events, and all of them), the model's vocabulary sizes with each item's category, the known
    users' serving histories, and the evaluation of a [users, items] score matrix."""
    train, test = evaluation.load_split(split)
    users, items, seen = evaluation.train_matrix(train)
    with open(os.path.join(split, "train", "interactions.csv"), newline="", encoding="utf-8") as fh:
        rows = {
            (r[contract.USER_ID], r[contract.ITEM_ID], r[contract.TIMESTAMP], r[contract.CATEGORY])
            for r in csv.DictReader(fh)
            if r[contract.INTERACTION_TYPE] != "dislike"
        }
    user_index = {u: n for n, u in enumerate(users)}
    item_index = {i: n for n, i in enumerate(items)}
    category_index = {c: n for n, c in enumerate(sorted({r[3] for r in rows}))}
    by_user = {}
    for row in rows:
        by_user.setdefault(row[0], []).append(row)
    columns = {name: [] for name in (contract.USER_IDX, contract.ITEM_IDX, contract.CATEGORY_IDX)}
    history, held_out = [], []
    for user, events in sorted(by_user.items()):
        events.sort(key=lambda r: _hash("|".join(r[:3])))
        for n, (_, item, timestamp, category) in enumerate(events):
            columns[contract.USER_IDX].append(user_index[user])
            columns[contract.ITEM_IDX].append(item_index[item])
            columns[contract.CATEGORY_IDX].append(category_index[category])
            before = [item_index[r[1]] for r in events[max(0, n - contract.HISTORY_LENGTH) : n]]
            history.append(before + [-1] * (contract.HISTORY_LENGTH - len(before)))
            held_out.append(_hash(timestamp) % EVAL_BUCKETS == 0)
    events = {name: np.array(values, np.int64) for name, values in columns.items()}
    events[contract.HISTORY_IDX] = np.array(history, np.int64)
    events[contract.RATING] = np.zeros(len(history), np.float32)
    events[contract.RATING_WEIGHT] = np.zeros(len(history), np.float32)
    held_out = np.array(held_out)
    everything = {name: tf.constant(values) for name, values in events.items()}
    candidate_part = {name: tf.constant(values[~held_out]) for name, values in events.items()}

    item_categories = np.zeros(len(items) + 1, np.int64)
    for (item, category), _ in Counter(
        zip(events[contract.ITEM_IDX].tolist(), events[contract.CATEGORY_IDX].tolist())
    ).most_common()[::-1]:
        item_categories[item] = category  # the most frequent pair is written last
    serve_history = np.array(
        [
            [item_index[i] for i in train[u][-contract.HISTORY_LENGTH :]]
            + [-1] * (contract.HISTORY_LENGTH - len(train[u][-contract.HISTORY_LENGTH :]))
            for u in users
        ],
        np.int64,
    )
    num_items = len(set(items) | {i for s in test.values() for i in s})

    def evaluate(scores):
        return evaluation.metrics(
            evaluation.top_k_unseen(scores, seen, users, items, evaluation.K), test, num_items
        )

    sizes = dict(
        num_users=len(users) + contract.NUM_OOV_BUCKETS,
        num_items=len(items) + contract.NUM_OOV_BUCKETS,
        num_categories=len(category_index) + contract.NUM_OOV_BUCKETS,
        item_categories=item_categories,
    )
    return candidate_part, everything, sizes, serve_history, evaluate


def baselines(split: str) -> dict:
    """nDCG@10 of most popular and EASE on the split."""
    train, test = evaluation.load_split(split)
    num_items = evaluation.catalog_size(train, test)
    return {
        name: evaluation.metrics(method(train), test, num_items)[evaluation.NDCG]
        for name, method in (("most_popular", evaluation.most_popular), ("ease", evaluation.ease))
    }


def scores(model, serve_history: np.ndarray) -> np.ndarray:
    """Every known user's score of every known item (the OOV item left out), as the serving signature scores:
    cosine + temperature * bias."""
    num_users, num_items = serve_history.shape[0], model.item_bias.input_dim - contract.NUM_OOV_BUCKETS
    queries = model.query_tower(tf.range(num_users, dtype=tf.int64), tf.constant(serve_history))
    items = tf.range(num_items, dtype=tf.int64)
    candidates = model.candidate_tower(items, tf.gather(model.item_categories, items))
    return (
        tf.matmul(queries, candidates, transpose_b=True)
        + model.hp.temperature * tf.transpose(model.item_bias(items))
    ).numpy()


class _EveryEpoch(tf.keras.callbacks.Callback):
    """nDCG@10 after every epoch; a full refit's also averaged with the final candidate's scores and with the
    candidate's after as many epochs (what a recipe of that many epochs would push: Adagrad's constant rate
    makes epoch e of a longer run the same model as a run of e epochs)."""

    def __init__(self, name, serve_history, evaluate, started, candidate_scores=None):
        super().__init__()
        self.name, self.serve_history, self.evaluate, self.started = name, serve_history, evaluate, started
        self.candidate_scores = candidate_scores
        self.results, self.scores = [], []

    def on_epoch_end(self, epoch, logs=None):
        s = scores(self.model, self.serve_history)
        result = {"alone": self.evaluate(s)[evaluation.NDCG]}
        line = f"{self.name} epoch {epoch + 1} loss {logs['loss']:.4f} ndcg@10 {result['alone']:.4f}"
        if self.candidate_scores is None:
            self.scores.append(s)
        else:
            result["averaged"] = self.evaluate((s + self.candidate_scores[-1]) / 2)[evaluation.NDCG]
            line += f" averaged with the candidate {result['averaged']:.4f}"
            if epoch < len(self.candidate_scores) - 1:
                same = self.evaluate((s + self.candidate_scores[epoch]) / 2)[evaluation.NDCG]
                result["averaged_same_epochs"] = same
                line += f", with its epoch {epoch + 1} {same:.4f}"
        self.results.append(result)
        print(f"{line} {time.time() - self.started:.0f}s", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default=os.path.join("build", "q1", "split"))
    parser.add_argument("--hparams", default="{}", help="JSON overrides of trainer_module.hparams.HParams")
    parser.add_argument(
        "--no-determinism", action="store_true", help="without TensorFlow's op determinism (the Trainer's)"
    )
    args = parser.parse_args()
    hp = HParams.from_overrides(json.loads(args.hparams))
    tf.keras.utils.set_random_seed(hp.seed)
    if not args.no_determinism:
        tf.config.experimental.enable_op_determinism()
    candidate_part, everything, sizes, serve_history, evaluate = load(args.split)
    print(
        f"baselines nDCG@10 {baselines(args.split)}; {candidate_part[contract.ITEM_IDX].shape[0]} events "
        f"train the candidate, {everything[contract.ITEM_IDX].shape[0]} the refit",
        flush=True,
    )
    started = time.time()

    def counts(events):
        return np.bincount(events[contract.ITEM_IDX].numpy(), minlength=sizes["num_items"])

    def fit(name, model, events, epochs, candidate_scores=None):
        every_epoch = _EveryEpoch(name, serve_history, evaluate, started, candidate_scores)
        model.fit(
            in_memory_batches(events, hp.batch_size, True, hp.seed, repeat=True),
            epochs=epochs,
            steps_per_epoch=steps_per_epoch(events, hp.batch_size),
            verbose=0,
            callbacks=[every_epoch],
        )
        return every_epoch

    candidate = compiled_model(hp, counts(candidate_part), **sizes)
    candidate_epochs = fit("candidate", candidate, candidate_part, hp.epochs)
    results = {"candidate": candidate_epochs.results}
    if hp.refit != "none":
        if hp.refit == "warm_start":
            model, epochs, candidate_scores = candidate, hp.refit_epochs, candidate_epochs.scores[-1:]
        else:
            model, epochs = compiled_model(hp, counts(everything), **sizes), hp.epochs
            candidate_scores = candidate_epochs.scores
        results["refit"] = fit("refit", model, everything, epochs, candidate_scores).results
    seconds = round(time.time() - started)
    print(json.dumps({"hparams": json.loads(args.hparams), "seconds": seconds, "ndcg@10": results}))


if __name__ == "__main__":
    main()
