"""The exact softmax (negatives="all_items") against in-batch negatives ("in_batch") and negatives sampled by
popularity ("sampled"), both with the logQ correction: time per epoch and ranking quality, at catalogs of 1e4,
1e5 and 1e6 items: the measurement behind trainer_module/hparams.py's rule for negatives="auto".

Usage: nice -n 19 .venv/bin/python -m benchmarks.negatives_scale [--items 10000 100000 1000000]
       [--events 50000] [--users 5000] [--epochs 2] [--max-epoch-seconds 300] [--eval-users 500]
       [--negatives all_items in_batch sampled]

The product's model (trainer_module/model.py's TwoTowerModel, default hyperparameters but the negatives and
epochs) on tfx_pipeline/data/sample.py's synthetic events with planted structure, the same number of events
at every catalog size. Each user's last event is held out; nDCG@10 (evaluation.py) of a brute-force top 10
over the whole catalog (the user's training items left out) for --eval-users users. A mode whose epoch would
take longer than --max-epoch-seconds (timed on a few steps) is not trained: its epoch time is that estimate
and it has no quality. The exact softmax at 1e6 items is not run at all: one step holds batch x items logits
and their gradient (8 GB at the default batch size) besides the catalog's embeddings; its time is
extrapolated linearly in items from the smaller catalogs.
"""

import argparse
import csv
import os
import platform
import tempfile
import time

import numpy as np
import tensorflow as tf

import contract
import evaluation
from tfx_pipeline.data import sample
from trainer_module.hparams import HParams
from trainer_module.model import TwoTowerModel

TIMING_STEPS = 5  # steps timed (after one warm-up step) to estimate an epoch the budget does not allow
RUN_LIMIT_ITEMS = 100_000  # the exact softmax is not run above this catalog size (the docstring says why)


def synthetic_events(out_dir: str, users: int, items: int, events: int) -> dict:
    """sample.py's events as the Trainer's tensors (history: the user's previous HISTORY_LENGTH items), with
    each user's last event as the test split."""
    sample.generate(out_dir, users=users, items=items, events=events)
    with open(os.path.join(out_dir, "interactions.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    user = np.array([int(r[contract.USER_ID][1:]) for r in rows])
    item = np.array([int(r[contract.ITEM_ID][1:]) for r in rows])
    groups = {g: n for n, g in enumerate(sample.GROUPS)}
    category = np.array([groups[r[contract.CATEGORY]] for r in rows])
    history = np.full((len(rows), contract.HISTORY_LENGTH), -1, np.int64)
    is_last = np.zeros(len(rows), bool)
    start = 0
    for end in [*np.flatnonzero(np.diff(user)) + 1, len(rows)]:  # one user's events are consecutive, in order
        for j in range(start + 1, end):
            previous = item[max(start, j - contract.HISTORY_LENGTH) : j]
            history[j, -len(previous) :] = previous
        is_last[end - 1] = True
        start = end
    item_category = np.zeros(items, np.int64)
    item_category[item] = category
    return dict(
        user=user, item=item, category=category, history=history, is_last=is_last, item_category=item_category
    )


def features(data: dict, rows: np.ndarray) -> dict:
    return {
        contract.USER_IDX: tf.constant(data["user"][rows]),
        contract.ITEM_IDX: tf.constant(data["item"][rows]),
        contract.CATEGORY_IDX: tf.constant(data["category"][rows]),
        contract.HISTORY_IDX: tf.constant(data["history"][rows]),
        contract.RATING: tf.zeros(len(rows)),
        contract.RATING_WEIGHT: tf.zeros(len(rows)),
    }


def ndcg(model, data: dict, users: int, items: int, eval_users: int) -> float:
    """nDCG@10 over a sample of users: each user's last event against the whole catalog, their training items
    left out."""
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(users, size=min(eval_users, users), replace=False))
    train_rows = np.flatnonzero(~data["is_last"])
    last_rows = np.flatnonzero(data["is_last"])
    test_row = dict(zip(data["user"][last_rows], last_rows))
    seen = {}
    for r in train_rows[np.isin(data["user"][train_rows], chosen)]:
        seen.setdefault(data["user"][r], []).append(data["item"][r])
    candidates = []
    for start in range(0, items, 100_000):
        index = tf.range(start, min(items, start + 100_000), dtype=tf.int64)
        candidates.append(model.candidate_tower(index, tf.gather(data["item_category"], index)))
    candidates = tf.concat(candidates, 0)
    bias = model.hp.temperature * model.item_bias(tf.range(items))[:, 0]
    recommended, test = {}, {}
    for start in range(0, len(chosen), 50):
        group = chosen[start : start + 50]
        rows = np.array([test_row[u] for u in group])
        query = model.query_tower(tf.constant(group), tf.constant(data["history"][rows]))
        scores = (tf.matmul(query, candidates, transpose_b=True) + bias).numpy()
        for n, u in enumerate(group):
            scores[n, seen.get(u, [])] = -np.inf
            top = np.argpartition(-scores[n], evaluation.K)[: evaluation.K]
            recommended[u] = list(top[np.argsort(-scores[n][top])])
            test[u] = {data["item"][test_row[u]]}
    return evaluation.metrics(recommended, test, items)[evaluation.NDCG]


def run(data: dict, users: int, items: int, negatives: str, args) -> dict:
    hp = HParams(epochs=args.epochs, negatives=negatives)
    tf.keras.utils.set_random_seed(hp.seed)
    train_rows = np.flatnonzero(~data["is_last"])
    counts = np.bincount(data["item"][train_rows], minlength=items)
    model = TwoTowerModel(
        hp, users + contract.NUM_OOV_BUCKETS, items, len(sample.GROUPS), counts, data["item_category"]
    )
    model.compile(optimizer=tf.keras.optimizers.Adagrad(hp.learning_rate))
    train = tf.data.Dataset.from_tensor_slices(features(data, train_rows))
    train = train.shuffle(len(train_rows), seed=hp.seed).batch(hp.batch_size)
    steps = int(np.ceil(len(train_rows) / hp.batch_size))
    if negatives == "all_items" and items > RUN_LIMIT_ITEMS:
        return {"epoch_seconds": None, "ndcg": None, "note": "not run (memory): extrapolated"}
    model.fit(train.take(1), epochs=1, verbose=0)  # builds and traces the step
    started = time.perf_counter()
    model.fit(train.take(TIMING_STEPS), epochs=1, verbose=0)
    estimate = (time.perf_counter() - started) / TIMING_STEPS * steps
    if estimate > args.max_epoch_seconds:
        return {"epoch_seconds": estimate, "ndcg": None, "note": f"estimated from {TIMING_STEPS} steps"}
    started = time.perf_counter()
    model.fit(train, epochs=hp.epochs, verbose=0)
    epoch_seconds = (time.perf_counter() - started) / hp.epochs
    return {
        "epoch_seconds": epoch_seconds,
        "ndcg": ndcg(model, data, users, items, args.eval_users),
        "note": "",
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-epoch-seconds", type=float, default=300)
    parser.add_argument("--eval-users", type=int, default=500)
    parser.add_argument("--negatives", nargs="+", default=["all_items", "in_batch", "sampled"])
    args = parser.parse_args()
    print(
        f"{args.events} events, {args.users} users, {args.epochs} epochs, default hyperparameters otherwise; "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    )
    print("| items | negatives | s / epoch | nDCG@10 | note |\n|---:|---|---:|---:|---|")
    measured = {}
    for items in args.items:
        with tempfile.TemporaryDirectory() as tmp:
            data = synthetic_events(tmp, args.users, items, args.events)
        for negatives in args.negatives:
            result = run(data, args.users, items, negatives, args)
            measured[(items, negatives)] = result
            if result["epoch_seconds"] is None:  # linear in items from the largest one timed
                timed = [(n, r) for (n, m), r in measured.items() if m == negatives and r["epoch_seconds"]]
                n, r = timed[-1]
                result["epoch_seconds"] = r["epoch_seconds"] * items / n
            seconds, quality = result["epoch_seconds"], result["ndcg"]
            print(
                f"| {items} | {negatives} | {seconds:.1f} | {'-' if quality is None else f'{quality:.4f}'} | "
                f"{result['note']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
