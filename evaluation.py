"""Offline ranking quality: the split protocol, the metrics, and the baselines they are compared with.

Protocol (our reported numbers): per-user stratified random split, 75% train / 25% test, seed 42; every
interaction is a positive; full ranking over all items with each user's training items left out; K = 10.
"""

import csv
import hashlib
import itertools
import math
import os
import shutil
from collections import Counter, defaultdict

import numpy as np
import scipy.linalg

import contract

K = 10
NDCG = f"ndcg@{K}"
# The pipeline's pushed model, retrained on every event: the eval split's metrics of it are of seen events.
REFIT = "refit_on_all_events"
# How far (a fraction of nDCG@K) a model may fall below the last blessed one and still be blessed: runs on
# the same data differ by a little, a broken model by much more.
MAX_REGRESSION = 0.05
EASE_MAX_ITEMS = 20_000  # EASE inverts an items x items matrix: 1.6 GB and minutes of CPU at this size


def inputs_fingerprint(events: list[tuple], recipe: str) -> str:
    """What a model was made from: its events (in any order, files and shards aside) and its training
    recipe."""
    digest = hashlib.sha256(recipe.encode())
    for event in sorted(events):
        digest.update(repr(event).encode())
    return digest.hexdigest()


def split_per_user(src: str, out: str, test_fraction: float = 0.25, seed: int = 42):
    """Writes out/train/ (the data directory without each user's test events) and out/test.csv: a random
    `test_fraction` of each user's events (at least one event of each user stays in train)."""
    with open(os.path.join(src, "interactions.csv"), newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames, list(reader)
    by_user = defaultdict(list)
    for n, row in enumerate(rows):
        by_user[row[contract.USER_ID]].append(n)
    rng = np.random.default_rng(seed)
    test_rows = set()
    for user in sorted(by_user):
        events = by_user[user]
        n_test = min(len(events) - 1, int(round(test_fraction * len(events))))
        test_rows.update(int(n) for n in rng.choice(events, size=n_test, replace=False))
    train_dir = os.path.join(out, "train")
    os.makedirs(train_dir, exist_ok=True)
    with open(os.path.join(train_dir, "interactions.csv"), "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(row for n, row in enumerate(rows) if n not in test_rows)
    with open(os.path.join(out, "test.csv"), "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(row for n, row in enumerate(rows) if n in test_rows)
    if os.path.exists(os.path.join(src, "items.csv")):
        shutil.copy(os.path.join(src, "items.csv"), train_dir)


def load_split(out: str) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """(each user's training items, oldest first; each user's test items) of a split_per_user directory."""

    def read(path):
        with open(path, newline="", encoding="utf-8") as fh:
            return sorted(csv.DictReader(fh), key=lambda r: (r[contract.TIMESTAMP], r[contract.ITEM_ID]))

    train, test = defaultdict(list), defaultdict(set)
    for row in read(os.path.join(out, "train", "interactions.csv")):
        train[row[contract.USER_ID]].append(row[contract.ITEM_ID])
    for row in read(os.path.join(out, "test.csv")):
        test[row[contract.USER_ID]].add(row[contract.ITEM_ID])
    return dict(train), dict(test)


def metrics(recommended: dict[str, list[str]], test: dict[str, set[str]], num_items: int, k: int = K) -> dict:
    """precision, recall, nDCG, hit rate at k (averaged over the users with test items), and coverage:
    the share of the catalog that appears in anyone's top k."""
    precision, recall, ndcg, hit, shown = [], [], [], [], set()
    for user, relevant in test.items():
        top = recommended.get(user, [])[:k]
        shown.update(top)
        gains = [1.0 if item in relevant else 0.0 for item in top]
        hits = sum(gains)
        precision.append(hits / k)
        recall.append(hits / min(k, len(relevant)))
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
        ndcg.append(sum(g / math.log2(i + 2) for i, g in enumerate(gains)) / ideal)
        hit.append(1.0 if hits else 0.0)
    return {
        f"precision@{k}": float(np.mean(precision)),
        f"recall@{k}": float(np.mean(recall)),
        f"ndcg@{k}": float(np.mean(ndcg)),
        f"hit@{k}": float(np.mean(hit)),
        "coverage": len(shown) / num_items,
        "users": len(test),
    }


def train_matrix(train: dict[str, list[str]]):
    """The binary user x item matrix of the training interactions, with its item ids."""
    items = sorted({i for seen in train.values() for i in seen})
    column = {item: c for c, item in enumerate(items)}
    users = sorted(train)
    x = np.zeros((len(users), len(items)), np.float32)
    for r, user in enumerate(users):
        x[r, [column[i] for i in train[user]]] = 1.0
    return users, items, x


def top_k_unseen(scores: np.ndarray, x: np.ndarray, users, items, k: int) -> dict[str, list[str]]:
    scores = np.where(x > 0, -np.inf, scores)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, 1).argsort(axis=1)[:, ::-1]
    ranked = np.take_along_axis(top, order, 1)
    return {
        user: [items[c] for c in row if scores[r, c] > -np.inf]
        for r, (user, row) in enumerate(zip(users, ranked))
    }


def most_popular(train: dict[str, list[str]], k: int = K) -> dict[str, list[str]]:
    """The k items with the most training users that each user has not seen (ties: the smaller item id).
    Memory in items and events, not users x items: it runs on catalogs EASE cannot."""
    users_of = Counter(i for seen in train.values() for i in set(seen))
    ranked = sorted(users_of, key=lambda i: (-users_of[i], i))
    out = {}
    for user, seen in train.items():
        seen = set(seen)
        out[user] = list(itertools.islice((i for i in ranked if i not in seen), k))
    return out


def symmetric_inverse(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix (float32) through its Cholesky factor: half the
    arithmetic of np.linalg.inv's LU, and the larger share of the Evaluator's time (docs/experiments.md)."""
    factor, info = scipy.linalg.lapack.spotrf(matrix, lower=False)
    if info == 0:
        inverse, info = scipy.linalg.lapack.spotri(factor, lower=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"not positive definite (LAPACK info {info})")
    return np.triu(inverse) + np.triu(inverse, 1).T  # spotri fills the upper triangle only


def ease(train: dict[str, list[str]], k: int = K, l2: float = 500.0) -> dict[str, list[str]]:
    """EASE (Steck 2019): B = I - P diagMat(1 / diag(P)), P = (X'X + l2 I)^-1, zero diagonal; scores X B."""
    users, items, x = train_matrix(train)
    gram = x.T @ x + l2 * np.eye(x.shape[1], dtype=np.float32)
    p = symmetric_inverse(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return top_k_unseen(x @ b, x, users, items, k)


def catalog_size(train: dict[str, list[str]], test: dict[str, set[str]]) -> int:
    """The items of the training and the test events: the catalog coverage is counted against."""
    return len({i for seen in train.values() for i in seen} | {i for items in test.values() for i in items})


def compare(
    train: dict[str, list[str]], test: dict[str, set[str]], recommended: dict[str, dict[str, list[str]]]
) -> dict[str, dict]:
    """The metrics of most popular, EASE (catalogs up to EASE_MAX_ITEMS) and each model's recommendations
    (name: {user: top K}, as serving.query.recommendations gives them), on the same users."""
    num_items = catalog_size(train, test)
    results = {"most_popular": metrics(most_popular(train), test, num_items)}
    if num_items <= EASE_MAX_ITEMS:
        results["ease"] = metrics(ease(train), test, num_items)
    for name, top in recommended.items():
        results[name] = metrics(top, test, num_items)
    return results


def bless(results: dict[str, dict], max_regression: float) -> tuple[bool, str]:
    """Blessed if the model's nDCG@K beats most popular's and, when the last blessed model was evaluated too
    ("baseline_model"), is at most `max_regression` (a fraction) below its nDCG@K; and if the refit model
    (REFIT, the one pushed, trained on the evaluated events as well) was evaluated, it beats most popular too.
    Returns (blessed, why)."""
    model, popular = results["model"][NDCG], results["most_popular"][NDCG]
    if model <= popular:
        return False, f"{NDCG} {model:.4f} does not beat most popular's {popular:.4f}"
    if REFIT in results and results[REFIT][NDCG] <= popular:
        return False, (
            f"the refit model's {NDCG} {results[REFIT][NDCG]:.4f} does not beat most popular's "
            f"{popular:.4f} even on events it trained on"
        )
    if "baseline_model" in results:
        baseline = results["baseline_model"][NDCG]
        if model < (1 - max_regression) * baseline:
            return False, (
                f"{NDCG} {model:.4f} is more than {max_regression:.0%} below the last blessed "
                f"model's {baseline:.4f}"
            )
        return (
            True,
            f"{NDCG} {model:.4f} beats most popular's {popular:.4f}; the last blessed model had "
            f"{baseline:.4f}",
        )
    return True, f"{NDCG} {model:.4f} beats most popular's {popular:.4f}"


def report(results: dict[str, dict]) -> str:
    """A Markdown table of the metrics of each method, with the other methods' ratios to the baselines (none
    for REFIT, which was trained on the events it is scored on)."""
    baselines = [name for name in ("most_popular", "ease") if name in results]
    keys = [m for m in next(iter(results.values())) if m != "users"]
    lines = ["| method | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name in results:
        lines.append(f"| {name} | " + " | ".join(f"{results[name][m]:.4f}" for m in keys) + " |")
    for baseline in baselines:
        for name in (n for n in results if n not in baselines and n != REFIT):  # the refit saw these events
            lines.append(
                f"| {name} / {baseline} | "
                + " | ".join(
                    f"{results[name][m] / results[baseline][m]:.2f}x" if results[baseline][m] else "-"
                    for m in keys
                )
                + " |"
            )
    if REFIT in results:
        lines.append(
            f"({REFIT}: the model pushed if blessed, trained on the eval split too: a check that it trained, "
            "not a test)"
        )
    return "\n".join(lines)
