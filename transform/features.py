"""Every column and feature name, defined once (data contract, examples, transformed features)."""

# Data contract: one row per interaction event (the BigQuery table's columns).
USER_ID = "user_id"
ITEM_ID = "item_id"
INTERACTION_TYPE = "interaction_type"
RATING = "rating"
TIMESTAMP = "timestamp"
CATEGORY = "category"
FEATURES = "features"  # free-form JSON, nullable; carried in the contract, not used by the model
INTERACTION_COLUMNS = (USER_ID, ITEM_ID, INTERACTION_TYPE, RATING, TIMESTAMP, CATEGORY, FEATURES)
REQUIRED_INTERACTION_COLUMNS = (USER_ID, ITEM_ID, INTERACTION_TYPE, TIMESTAMP, CATEGORY)
INTERACTION_TYPES = ("view", "cart_add", "purchase", "rating", "like", "dislike", "click")

# Items catalog (optional).
TITLE = "title"
ITEM_COLUMNS = (ITEM_ID, TITLE, CATEGORY)

# Examples (ExampleGen output) add up to HISTORY_LENGTH of the user's other items to each event (history_query.py).
HISTORY = "history"
HISTORY_LENGTH = 20

# Transformed features: vocabulary indices, with one out-of-vocabulary bucket each.
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"
CATEGORY_IDX = "category_idx"
HISTORY_IDX = "history_idx"
RATING_WEIGHT = "rating_weight"  # 1.0 on explicit ratings, else 0.0: the rating head learns only from those
USER_VOCAB = "user_id"
ITEM_VOCAB = "item_id"
CATEGORY_VOCAB = "category"
NUM_OOV_BUCKETS = 1
