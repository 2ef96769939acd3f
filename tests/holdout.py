"""The tests' held-out split: each user's last events."""

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
