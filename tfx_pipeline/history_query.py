"""The SQL that turns interactions into training examples, the same text for BigQuery and DuckDB.

Each event gets up to HISTORY_LENGTH of the user's other items through a window over the user's events in
a fixed pseudo-random order (a fingerprint of user, item and time), so the history is computed where the
data lives, by the engine that holds it. Not time order: trained on the items just before each event, the
history bag learned the order in which users happened to log items (the next item of a session) instead of
their taste, and ranked held-out items far worse (docs/experiments.md). At serving time the history
is the user's most recent items: a sample of their taste that follows what they just did. Dislikes are neither
training targets nor history: every other interaction counts as a positive. Duplicate rows (the same
user, item, type, rating, time and category: an event logged twice) count once.
"""

import contract


def history_query(table: str, history_length: int = contract.HISTORY_LENGTH) -> str:
    return f"""
SELECT
  {contract.USER_ID}, {contract.ITEM_ID}, {contract.INTERACTION_TYPE},
  COALESCE({contract.RATING}, 0.0) AS {contract.RATING},
  UNIX_SECONDS({contract.TIMESTAMP}) AS {contract.TIMESTAMP},
  COALESCE({contract.CATEGORY}, '') AS {contract.CATEGORY},
  ARRAY_AGG({contract.ITEM_ID}) OVER (
    PARTITION BY {contract.USER_ID}
    ORDER BY FARM_FINGERPRINT(CONCAT(
      {contract.USER_ID}, '|', {contract.ITEM_ID}, '|', CAST(UNIX_SECONDS({contract.TIMESTAMP}) AS STRING)))
    ROWS BETWEEN {history_length} PRECEDING AND 1 PRECEDING) AS {contract.HISTORY}
FROM (SELECT DISTINCT {contract.USER_ID}, {contract.ITEM_ID}, {contract.INTERACTION_TYPE}, {contract.RATING},
        {contract.TIMESTAMP}, {contract.CATEGORY}
      FROM {table})
WHERE {contract.INTERACTION_TYPE} != 'dislike'
"""


def recent_events_source(interactions_table: str, feedback_table: str, window_days: int) -> str:
    """BigQuery: the interactions and the API's feedback (same columns) of the last `window_days`, as the
    `table` of history_query, so each retraining reads recent data and what users did since."""
    columns = ", ".join(
        (
            contract.USER_ID,
            contract.ITEM_ID,
            contract.INTERACTION_TYPE,
            contract.RATING,
            contract.TIMESTAMP,
            contract.CATEGORY,
        )
    )
    recent = (
        f"WHERE {contract.TIMESTAMP} >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {int(window_days)} DAY)"
    )
    return (
        f"(SELECT {columns} FROM `{interactions_table}` {recent}\n"
        f" UNION ALL SELECT {columns} FROM `{feedback_table}` {recent})"
    )
