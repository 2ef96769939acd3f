"""The SQL that turns interactions into training examples, the same text for BigQuery and DuckDB.

Each event gets the user's preceding items (at most HISTORY_LENGTH, oldest first) through a window,
so the history is computed where the data lives, by the engine that holds it. Dislikes are neither
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
    PARTITION BY {f.USER_ID} ORDER BY {f.TIMESTAMP}, {f.ITEM_ID}
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
    return (f"(SELECT {columns} FROM `{interactions_table}` {recent}\n"
            f" UNION ALL SELECT {columns} FROM `{feedback_table}` {recent})")
