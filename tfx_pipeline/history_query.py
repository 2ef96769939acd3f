"""The SQL that turns interactions into training examples, the same text for BigQuery and DuckDB.

Each event gets the user's preceding items (at most HISTORY_LENGTH, oldest first) through a window,
so the history is computed where the data lives, by the engine that holds it. Dislikes are neither
training targets nor history: every other interaction counts as a positive.
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
FROM {table}
WHERE {f.INTERACTION_TYPE} != 'dislike'
"""
