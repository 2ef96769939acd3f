"""The model query, as the API sends it and the pipeline's Evaluator sends it (so a model is evaluated as it is
served): the user's recent positive items as history, and the items to leave out."""

import contract


def history(recent_positive_items: list[str]) -> list[str]:
    """The query's history input: the user's last HISTORY_LENGTH positive items, oldest first."""
    return list(recent_positive_items)[-contract.HISTORY_LENGTH :]


def exclusions(asked: list[str], seen_newest_first: list[str], limit: int) -> list[str]:
    """The items to leave out: those the request names, then the user's seen items, newest first, without
    repeats, at most `limit` (the model's own limit, so an older version still answers)."""
    return list(dict.fromkeys(list(asked) + list(seen_newest_first)))[:limit]
