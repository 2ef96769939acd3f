"""EASE, the baseline the Evaluator and `recsys benchmark quality` compute on every run, with its inverse
through Cholesky (evaluation.symmetric_inverse, what it uses) against np.linalg.inv, in the same run: the
seconds of evaluation.ease and the nDCG@10 each gives.

Usage: .venv/bin/python -m benchmarks.ease_inverse --split build/q1/split [--rounds 2]
(--split: the `split` directory of a `recsys benchmark quality` workdir.)
"""

import argparse
import time

import numpy as np

import evaluation

INVERSES = {
    "Cholesky (evaluation.symmetric_inverse)": evaluation.symmetric_inverse,
    "np.linalg.inv": np.linalg.inv,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", required=True)
    parser.add_argument("--rounds", type=int, default=2, help="times the two take turns")
    args = parser.parse_args()
    train, test = evaluation.load_split(args.split)
    num_items = evaluation.catalog_size(train, test)
    seconds, ndcg = {name: [] for name in INVERSES}, {}
    shipped = evaluation.symmetric_inverse
    try:
        for _ in range(args.rounds):
            for name, inverse in INVERSES.items():
                evaluation.symmetric_inverse = inverse
                started = time.perf_counter()
                top = evaluation.ease(train)
                seconds[name].append(time.perf_counter() - started)
                ndcg[name] = evaluation.metrics(top, test, num_items)[evaluation.NDCG]
    finally:
        evaluation.symmetric_inverse = shipped
    baseline = min(seconds["np.linalg.inv"])
    print(f"{len(train)} users, {num_items} items")
    print("| inverse | ease() seconds, each round | nDCG@10 | best time / np.linalg.inv's |")
    print("|---|---|---:|---:|")
    for name in INVERSES:
        rounds = ", ".join(f"{s:.1f}" for s in seconds[name])
        print(f"| {name} | {rounds} | {ndcg[name]:.4f} | {min(seconds[name]) / baseline:.2f}x |")


if __name__ == "__main__":
    main()
