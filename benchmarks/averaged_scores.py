"""nDCG@10 of exported models on a `recsys benchmark quality` split, alone and with their scores averaged.

Usage: .venv/bin/python benchmarks/averaged_scores.py [--split build/q1/split] MODEL_DIR...
       .venv/bin/python benchmarks/averaged_scores.py [--split ...] --refit-alone AVERAGED CANDIDATE [...]
MODEL_DIR: a Trainer's or RefitTrainer's `.../model/N/Format-Serving`. Prints each model's nDCG@10, the
mean of the scores of every pair and of all of them. With --refit-alone, the arguments are pairs of a
RefitTrainer's averaged export and the candidate averaged into it; an averaged score is the mean of both
models' scores, so the refit's own is 2 * averaged - candidate.

Every item scored for every user of the split (full ranking, each user's training items left out, their
latest 20 training items as the history): the same protocol as `recsys evaluate`, without the signature's
top k, so the scores of different models can be combined.
"""

import argparse
import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import contract  # noqa: E402
import evaluation  # noqa: E402
from serving import exported


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dirs", nargs="+")
    parser.add_argument("--split", default=os.path.join("build", "q1", "split"))
    parser.add_argument("--refit-alone", action="store_true")
    args = parser.parse_args()
    train, test = evaluation.load_split(args.split)
    users, items, seen = evaluation.train_matrix(train)
    num_items = len(set(items) | {i for held_out in test.values() for i in held_out})
    column = {item: c for c, item in enumerate(items)}
    histories = [
        train[u][-contract.HISTORY_LENGTH :]
        + [""] * (contract.HISTORY_LENGTH - len(train[u][-contract.HISTORY_LENGTH :]))
        for u in users
    ]

    def scores(model_dir):
        """[users, items of the split] scores; an item the model does not know scores lowest."""
        model = exported.load(model_dir)
        t = model.tft_layer(
            {contract.USER_ID: tf.constant(users)[:, None], contract.HISTORY: tf.sparse.from_dense(histories)}
        )
        # `query` is the exported query tower since commit 97860ac; older exports have only `query_tower`.
        query = getattr(model, "query", None) or model.query_tower
        queries = query(t[contract.USER_IDX], t[contract.HISTORY_IDX]).numpy()
        by_model = (
            np.hstack([queries, np.ones((len(users), 1), np.float32)]) @ model.index.candidates.numpy().T
        )
        out = np.full((len(users), len(items)), -1e9, np.float32)
        known = [(n, column[i]) for n, i in enumerate(model.item_ids.numpy().astype(str)) if i in column]
        out[:, [c for _, c in known]] = by_model[:, [n for n, _ in known]]
        return out

    def ndcg(s):
        recommended = evaluation.top_k_unseen(s, seen, users, items, evaluation.K)
        return evaluation.metrics(recommended, test, num_items)[evaluation.NDCG]

    if args.refit_alone:
        for averaged, candidate in zip(args.model_dirs[::2], args.model_dirs[1::2]):
            a, c = scores(averaged), scores(candidate)
            print(
                f"candidate {ndcg(c):.4f}  averaged {ndcg(a):.4f}  refit alone {ndcg(2 * a - c):.4f}  "
                f"{averaged}"
            )
        return
    s = {d: scores(d) for d in args.model_dirs}
    for d, x in s.items():
        print(f"{ndcg(x):.4f}  {d}")
    for a, b in itertools.combinations(s, 2):
        print(f"{ndcg((s[a] + s[b]) / 2):.4f}  mean of {a} and {b}")
    if len(s) > 2:
        print(f"{ndcg(sum(s.values()) / len(s)):.4f}  mean of all {len(s)}")


if __name__ == "__main__":
    main()
