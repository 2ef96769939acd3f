"""Fast screening of two-tower variants on a `recsys benchmark quality` split, outside the pipeline.

Usage: .venv/bin/python benchmarks/model_screen.py [--split build/q1/split] ['{"dim": 128, ...}']
Prints nDCG@10 after every epoch (the same metrics code and protocol as the pipeline's evaluation: each
user's training items left out, the latest 20 training items as the query's history) and the baselines'.

Why: a pipeline run costs about 5 minutes; this trains a stripped-down model (ids only: no category, no
rating head, no export) in about 5 s per epoch, so a variant's learning curve is cheap. It is a screen, not
the product: variants that win here are then run through the real pipeline (`recsys benchmark quality`),
and only those numbers count as results (BENCHMARKS.md).
"""

import argparse
import hashlib
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import contract  # noqa: E402
import evaluation  # noqa: E402

DEFAULTS = dict(
    dim=64,
    epochs=2,
    batch=1024,
    lr=0.05,
    opt="adagrad",
    seed=42,
    temp=0.2,
    norm=True,  # cosine / temp (norm) or a plain dot product
    bias=True,  # a learned bias per item
    user=True,
    hist=True,
    hist_len=contract.HISTORY_LENGTH,
    serve_hist_len=contract.HISTORY_LENGTH,
    hist_drop=0.5,
    user_drop=0.1,
    known_hist_weight=1.0,  # the history's weight in the queries of known users (new users: 1)
    dense=True,  # a dense layer on each tower (the old model); off: embeddings straight to the cosine
    sum=False,  # user + history summed instead of concatenated (needs dense off or keeps the dense layer)
    tie=False,  # history items embedded by the candidate item table instead of their own table
    hidden=0,
    act=None,  # an extra hidden layer on the query side
    l2=0.0,  # on the gathered user and item embeddings of each batch
    query_drop=0.0,  # dropout on the query vector before it is normalized (training only)
    mask_seen=False,  # leave the user's other training items out of each event's softmax
    average_from=0,  # from this epoch on, also evaluate the mean of the weights after each epoch (0: off)
    user_weight_pow=0.0,  # each event's loss weighs (the user's event count)^-pow, normalized to mean 1
    buffer=0,  # shuffle buffer (0: the whole data set)
    train_share=1.0,  # train on this share of the events (TFX's default 2:1 split: 2/3; ours: 0.95)
    holdout_min_events=0,  # leave the share out only of the events of users with at least this many
    refit_epochs=0,  # after the epochs on the share, this many more on all events (a warm-started refit)
)


def load(split: str, hist_len: int, serve_hist_len: int):
    train, test = evaluation.load_split(split)
    users, items, seen = evaluation.train_matrix(train)
    uidx, iidx = {u: n for n, u in enumerate(users)}, {i: n for n, i in enumerate(items)}

    def pad(seq, n):
        return seq + [-1] * (n - len(seq))

    # As history_query.py: each event's history is up to hist_len of the user's other items in a fixed
    # shuffled order (here md5 instead of FARM_FINGERPRINT).
    rows_u, rows_i, rows_h = [], [], []
    for u in users:
        seq = sorted(set(train[u]), key=lambda i: hashlib.md5(f"{u}|{i}".encode()).hexdigest())
        for n, i in enumerate(seq):
            rows_u.append(uidx[u])
            rows_i.append(iidx[i])
            rows_h.append(pad([iidx[x] for x in seq[max(0, n - hist_len) : n]], hist_len))
    serve_history = np.array(
        [pad([iidx[i] for i in train[u][-serve_hist_len:]], serve_hist_len) for u in users], np.int32
    )
    num_items = len(set(items) | {i for s in test.values() for i in s})

    def evaluate(scores):
        return evaluation.metrics(
            evaluation.top_k_unseen(scores, seen, users, items, evaluation.K), test, num_items
        )

    baselines = {
        "most_popular": evaluation.metrics(evaluation.most_popular(train), test, num_items)[evaluation.NDCG],
        "ease": evaluation.metrics(evaluation.ease(train), test, num_items)[evaluation.NDCG],
    }
    examples = (np.array(rows_u), np.array(rows_i), np.array(rows_h, np.int32))
    return examples, serve_history, len(users), len(items), evaluate, baselines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config", nargs="?", default="{}", help="JSON overrides of DEFAULTS")
    parser.add_argument("--split", default=os.path.join("build", "q1", "split"))
    args = parser.parse_args()
    cfg = dict(DEFAULTS)
    unknown = set(json.loads(args.config)) - set(cfg)
    if unknown:
        parser.error(f"unknown option(s) {sorted(unknown)}")
    cfg.update(json.loads(args.config))
    tf.keras.utils.set_random_seed(cfg["seed"])
    (U, items, Hs), serve_history, NU, NI, evaluate, baselines = load(
        args.split, cfg["hist_len"], cfg["serve_hist_len"]
    )
    print("baselines nDCG@10", baselines, flush=True)
    all_events = (U, items, Hs)
    if cfg["train_share"] < 1:
        eligible = np.bincount(U)[U] >= cfg["holdout_min_events"]
        drop_rate = (1 - cfg["train_share"]) * len(U) / eligible.sum()
        keep = ~eligible | (np.random.default_rng(7).random(len(U)) < 1 - drop_rate)
        U, items, Hs = U[keep], items[keep], Hs[keep]

    def event_weights(u):
        weights = np.bincount(u)[u].astype(np.float32) ** -cfg["user_weight_pow"]
        return weights / weights.mean()

    D = cfg["dim"]
    init = tf.keras.initializers.RandomUniform(-0.05, 0.05)  # Keras' Embedding default
    user_emb = tf.Variable(init((NU + 1, D)))  # the last row: the out-of-vocabulary user
    item_emb = tf.Variable(init((NI, D)))
    hist_emb = item_emb if cfg["tie"] else tf.Variable(init((NI, D)))
    item_bias = tf.Variable(tf.zeros((NI,)))
    query_layers = (
        [tf.keras.layers.Dense(cfg["hidden"], activation=cfg["act"])] if cfg["hidden"] else []
    ) + ([tf.keras.layers.Dense(D)] if cfg["dense"] else [])
    query_dense = tf.keras.Sequential(query_layers) if query_layers else None
    item_dense = tf.keras.layers.Dense(D) if cfg["dense"] else None
    if query_dense:
        query_dense.build((None, D if cfg["sum"] else D * (cfg["user"] + cfg["hist"])))
    if item_dense:
        item_dense.build((None, D))
    variables = (
        [user_emb, item_emb] + ([] if cfg["tie"] else [hist_emb]) + ([item_bias] if cfg["bias"] else [])
    )
    variables += (query_dense.trainable_variables if query_dense else []) + (
        item_dense.trainable_variables if item_dense else []
    )

    def query(u, h, training):
        parts = []
        if cfg["user"]:
            if training and cfg["user_drop"] > 0:
                u = tf.where(tf.random.uniform(tf.shape(u)) < cfg["user_drop"], tf.cast(NU, u.dtype), u)
            parts.append(tf.gather(user_emb, u))
        if cfg["hist"]:
            mask = tf.cast(h >= 0, tf.float32)
            if training and cfg["hist_drop"] > 0:
                mask *= tf.cast(tf.random.uniform((tf.shape(h)[0], 1)) >= cfg["hist_drop"], tf.float32)
            v = tf.gather(hist_emb, tf.maximum(h, 0)) * mask[..., None]
            v = tf.math.divide_no_nan(tf.reduce_sum(v, 1), tf.reduce_sum(mask, 1, keepdims=True))
            if cfg["user"]:
                v *= tf.where(u == NU, 1.0, cfg["known_hist_weight"])[:, None]
            parts.append(v)
        x = tf.add_n(parts) if cfg["sum"] else tf.concat(parts, 1)
        x = query_dense(x) if query_dense else x
        x = tf.nn.dropout(x, cfg["query_drop"]) if training and cfg["query_drop"] else x
        return tf.math.l2_normalize(x, 1) if cfg["norm"] else x

    def logits(q):
        candidates = item_dense(item_emb) if item_dense else item_emb
        out = tf.matmul(
            q, tf.math.l2_normalize(candidates, 1) if cfg["norm"] else candidates, transpose_b=True
        )
        out = out / cfg["temp"] if cfg["norm"] else out
        return out + item_bias[None, :] if cfg["bias"] else out

    optimizer = {"adagrad": tf.keras.optimizers.Adagrad, "adam": tf.keras.optimizers.Adam}[cfg["opt"]](
        cfg["lr"]
    )

    if cfg["mask_seen"]:
        seen = np.zeros((NU, NI), bool)
        seen[U, items] = True
        seen = tf.constant(seen)

    @tf.function
    def step(u, i, h, w):
        with tf.GradientTape() as tape:
            out = logits(query(u, h, True))
            if cfg["mask_seen"]:
                out = tf.where(tf.gather(seen, u) & ~tf.cast(tf.one_hot(i, NI), tf.bool), -1e9, out)
            loss = tf.reduce_sum(w * tf.nn.sparse_softmax_cross_entropy_with_logits(labels=i, logits=out))
            if cfg["l2"]:
                loss += cfg["l2"] * (
                    tf.reduce_sum(tf.square(tf.gather(user_emb, u)))
                    + tf.reduce_sum(tf.square(tf.gather(item_emb, i)))
                )
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def shuffled(u, i, h, w):
        return tf.data.Dataset.from_tensor_slices((u, i, h, w)).shuffle(
            cfg["buffer"] or len(u), seed=cfg["seed"]
        )

    data = shuffled(U, items, Hs, event_weights(U))
    started, best = time.time(), (0.0, 0)

    def evaluate_now():
        return evaluate(logits(query(tf.range(NU), tf.constant(serve_history), False)).numpy())

    averages, averaged = list(variables), 0  # the first average is the variables' values: nothing to allocate
    for epoch in range(1, cfg["epochs"] + cfg["refit_epochs"] + 1):
        if epoch == cfg["epochs"] + 1:  # the refit epochs: every event from here on
            U, items, Hs = all_events
            data = shuffled(U, items, Hs, event_weights(U))
        total = sum(float(step(u, i, h, w)) for u, i, h, w in data.batch(cfg["batch"]))
        m = evaluate_now()
        best = max(best, (m[evaluation.NDCG], epoch))
        print(
            f"epoch {epoch} loss {total / len(U):.4f} ndcg@10 {m[evaluation.NDCG]:.4f} "
            f"recall@10 {m['recall@10']:.4f} coverage {m['coverage']:.3f} {time.time() - started:.0f}s",
            flush=True,
        )
        if cfg["average_from"] and epoch >= cfg["average_from"]:
            averaged += 1
            averages = [a + (v - a) / averaged for a, v in zip(averages, variables)]
            current = [tf.identity(v) for v in variables]
            for v, a in zip(variables, averages):
                v.assign(a)
            m = evaluate_now()
            for v, c in zip(variables, current):
                v.assign(c)
            print(f"epoch {epoch} averaged over {averaged} ndcg@10 {m[evaluation.NDCG]:.4f}", flush=True)
    print(f"best nDCG@10 {best[0]:.4f} at epoch {best[1]} with {json.dumps(cfg)}")


if __name__ == "__main__":
    main()
