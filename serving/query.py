"""The model query, as the API sends it and the pipeline's Evaluator sends it (so a model is evaluated as it
is served): the user's recent positive items as history, and the items to leave out."""

import contract


def history(recent_positive_items: list[str]) -> list[str]:
    """The query's history input: the user's last HISTORY_LENGTH positive items, oldest first."""
    return list(recent_positive_items)[-contract.HISTORY_LENGTH :]


def exclusions(asked: list[str], seen_newest_first: list[str], limit: int) -> list[str]:
    """The items to leave out: those the request names, then the user's seen items, newest first, without
    repeats, at most `limit` (the model's own limit, so an older version still answers)."""
    return list(dict.fromkeys(list(asked) + list(seen_newest_first)))[:limit]


def recommendations(model, train: dict[str, list[str]], k: int, batch: int = 64) -> dict[str, list[str]]:
    """A model's top k per user, queried as the API queries it: each user's training items (oldest first) as
    their history and seen items. The signature leaves out the most recent ones up to the model's limit; older
    ones it returns are dropped here. model: an EmbeddedModel or a TF Serving client."""
    users = sorted(train)
    out = {}
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        ranked = model.recommend(
            chunk,
            [history(train[u]) for u in chunk],
            [exclusions([], list(reversed(train[u])), model.catalog.max_exclusions) for u in chunk],
            contract.TOP_K,
        )
        for user, items in zip(chunk, ranked):
            seen = set(train[user])
            out[user] = [i for i, _ in items if i not in seen][:k]
    return out
