"""Synthetic interactions with planted structure, so a working model measurably beats popularity.

Each user has a hidden taste over item groups (the categories) and tends to stay in a group for a few
events in a row; items have a popularity skew within their group. Popularity alone therefore misses
most of what a user does next; the user's id and recent history predict it.
"""

import csv
import os
from datetime import datetime, timedelta, timezone

import numpy as np

import contract

GROUPS = ("action", "comedy", "drama", "horror", "romance", "scifi", "documentary", "animation")
# Implicit events dominate; ratings carry a value (higher inside the user's taste).
TYPE_WEIGHTS = {"view": 0.45, "click": 0.2, "cart_add": 0.08, "purchase": 0.05, "like": 0.07, "rating": 0.15}
STAY_IN_GROUP = 0.7
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def generate(
    out_dir: str,
    users: int = 500,
    items: int = 400,
    events: int = 20000,
    seed: int = 42,
    start: datetime = START,
) -> None:
    """Writes interactions.csv and items.csv; each user's events begin within 30 days of `start`."""
    rng = np.random.default_rng(seed)
    item_group = rng.integers(len(GROUPS), size=items)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8  # Zipf-like; shuffled so ids carry no signal
    popularity = popularity[rng.permutation(items)]
    members = [np.flatnonzero(item_group == g) for g in range(len(GROUPS))]
    in_group_p = [popularity[m] / popularity[m].sum() for m in members]
    tastes = rng.dirichlet(np.full(len(GROUPS), 0.3), size=users) * [len(m) > 0 for m in members]
    tastes /= tastes.sum(axis=1, keepdims=True)  # a catalog smaller than the groups leaves some empty
    per_user = rng.multinomial(events - 5 * users, rng.dirichlet(np.full(users, 2.0))) + 5
    types, type_p = list(TYPE_WEIGHTS), np.array(list(TYPE_WEIGHTS.values()))

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "interactions.csv"), "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(contract.INTERACTION_COLUMNS)
        for u in range(users):
            t = start + timedelta(minutes=int(rng.integers(0, 60 * 24 * 30)))
            group = rng.choice(len(GROUPS), p=tastes[u])
            for _ in range(per_user[u]):
                if rng.random() > STAY_IN_GROUP:
                    group = rng.choice(len(GROUPS), p=tastes[u])
                item = rng.choice(members[group], p=in_group_p[group])
                kind = types[rng.choice(len(types), p=type_p)]
                rating = (
                    min(5.0, max(1.0, round(2.0 + 4.0 * tastes[u][group] + rng.normal(0, 0.5))))
                    if kind == "rating"
                    else ""
                )
                t += timedelta(minutes=int(rng.integers(1, 600)))
                writer.writerow(
                    [
                        f"u{u:05d}",
                        f"i{item:05d}",
                        kind,
                        rating,
                        t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        GROUPS[item_group[item]],
                        "",
                    ]
                )
    with open(os.path.join(out_dir, "items.csv"), "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(contract.ITEM_COLUMNS)
        for i in range(items):
            writer.writerow(
                [f"i{i:05d}", f"{GROUPS[item_group[i]].title()} title {i}", GROUPS[item_group[i]]]
            )
