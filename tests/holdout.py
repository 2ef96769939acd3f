"""Held-out evaluation helpers for the tests: last-events split, recall@k, popularity baseline."""

import collections
import csv
import os
import shutil


def split_last_events(src: str, out: str, per_user: int) -> dict[str, set[str]]:
    """Copies src to out without each user's last `per_user` events; returns those events' items per user."""
    with open(os.path.join(src, "interactions.csv"), newline="") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames, list(reader)
    by_user = collections.defaultdict(list)
    for row in rows:
        by_user[row["user_id"]].append(row)
    train, held_out = [], {}
    for user, events in by_user.items():
        events.sort(key=lambda r: r["timestamp"])
        train += events[:-per_user]
        held_out[user] = {r["item_id"] for r in events[-per_user:]}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "interactions.csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(train)
    shutil.copy(os.path.join(src, "items.csv"), out)
    return held_out


def recall_at_k(recommended: dict[str, list[str]], held_out: dict[str, set[str]], k: int = 10) -> float:
    hits = [len(set(recommended[u][:k]) & items) / min(k, len(items)) for u, items in held_out.items()]
    return sum(hits) / len(hits)


def popularity(histories: dict[str, list[str]], counts: collections.Counter, k: int) -> dict[str, list[str]]:
    """Most popular items, each user's seen items left out (as the model's exclusion does)."""
    ranked = [item for item, _ in counts.most_common()]
    return {u: [i for i in ranked if i not in set(seen)][:k] for u, seen in histories.items()}
