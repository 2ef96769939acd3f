"""Each user's recent items, kept in memory: seeded from the training data and the feedback store at
start-up, then updated by every accepted feedback event, so the next /recommend sees it."""

import collections

import contract

SEEN_LIMIT = contract.MAX_EXCLUSIONS  # what one query can exclude


class HistoryStore:
    def __init__(self, history_length: int = contract.HISTORY_LENGTH):
        self.history_length = history_length
        self._positives = collections.defaultdict(lambda: collections.deque(maxlen=SEEN_LIMIT))
        self._seen = collections.defaultdict(lambda: collections.deque(maxlen=SEEN_LIMIT))

    def add_events(self, events):
        for user_id, item_id, interaction_type in events:
            self.add(user_id, item_id, interaction_type)

    def add(self, user_id: str, item_id: str, interaction_type: str):
        self._seen[user_id].append(item_id)
        if interaction_type != "dislike":  # as in training: dislikes are not history
            self._positives[user_id].append(item_id)

    def history(self, user_id: str) -> list[str]:
        """The most recent positive items, oldest first: the query's history input."""
        items = self._positives.get(user_id, ())
        return list(items)[-self.history_length :]

    def seen(self, user_id: str) -> list[str]:
        """Distinct items the user interacted with, most recent first, at most SEEN_LIMIT."""
        return list(dict.fromkeys(reversed(self._seen.get(user_id, ()))))

    def users(self):
        return self._seen.keys()
