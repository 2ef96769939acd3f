"""The SQL that turns interactions into training examples, the same text for BigQuery and DuckDB.

Each event gets up to HISTORY_LENGTH of the user's other items through a window over the user's events in
a fixed pseudo-random order (a fingerprint of user, item and time), so the history is computed where the
data lives, by the engine that holds it. Not time order: trained on the items just before each event, the
history bag learned the order in which users happened to log items (the next item of a session) instead of
their taste, and ranked held-out items far worse (BENCHMARKS.md, J against Q). At serving time the history
is the user's most recent items: a sample of their taste that follows what they just did. Dislikes are neither
training targets nor history: every other interaction counts as a positive. Duplicate rows (the same
user, item, type, rating, time and category: an event logged twice) count once.
"""

from transform import features as f


def history_query(table: str, history_length: int = f.HISTORY_LENGTH) -> str:
    return f"""
SELECT
  {f.USER_ID}, {f.ITEM_ID}, {f.INTERACTION_TYPE},
  COALESCE({f.RATING}, 0.0) AS {f.RATING},
  UNIX_SECONDS({f.TIMESTAMP}) AS {f.TIMESTAMP},
  COALESCE({f.CATEGORY}, '') AS {f.CATEGORY},
  ARRAY_AGG({f.ITEM_ID}) OVER (
    PARTITION BY {f.USER_ID}
    ORDER BY FARM_FINGERPRINT(CONCAT({f.USER_ID}, '|', {f.ITEM_ID}, '|', CAST(UNIX_SECONDS({f.TIMESTAMP}) AS STRING)))
    ROWS BETWEEN {history_length} PRECEDING AND 1 PRECEDING) AS {f.HISTORY}
FROM (SELECT DISTINCT {f.USER_ID}, {f.ITEM_ID}, {f.INTERACTION_TYPE}, {f.RATING}, {f.TIMESTAMP}, {f.CATEGORY}
      FROM {table})
WHERE {f.INTERACTION_TYPE} != 'dislike'
"""


def recent_events_source(interactions_table: str, feedback_table: str, window_days: int) -> str:
    """BigQuery: the interactions and the API's feedback (same columns) of the last `window_days`, as the
    `table` of history_query, so each retraining reads recent data and what users did since."""
    columns = ", ".join((f.USER_ID, f.ITEM_ID, f.INTERACTION_TYPE, f.RATING, f.TIMESTAMP, f.CATEGORY))
    recent = f"WHERE {f.TIMESTAMP} >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {int(window_days)} DAY)"
    return (
        f"(SELECT {columns} FROM `{interactions_table}` {recent}\n"
        f" UNION ALL SELECT {columns} FROM `{feedback_table}` {recent})"
    )
