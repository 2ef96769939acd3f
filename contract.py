"""The contract every part of the system agrees on, defined once: the data's columns and interaction types,
the feature names, and the layout of an exported model version with its signatures and limits.

It imports nothing of the project's and no TensorFlow, so the pipeline, the trainer, the serving code and the
API can all import it (tests/test_layering.py checks that it stays at the bottom).
"""

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

# Examples (ExampleGen output) add up to HISTORY_LENGTH of the user's other items to each event
# (tfx_pipeline/history_query.py).
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

# An exported model version: what the Pusher copies to <serving base>/<model name>/<version>/, where <version>
# is an integer (the push time in Unix seconds) and saved_model.pb is written last.
#   saved_model.pb, variables/        brute-force index: loads in stock TensorFlow Serving and anywhere
#                                     TF runs
#   scann/                            the same signatures over a ScaNN index (needs the ScaNN ops)
#   assets/<USER_VOCAB>               the Transform vocabulary of the user ids the model knows
#   assets.extra/items.csv            the candidates: item_id,title,category,popularity
#   assets.extra/export_report.json   ScaNN-vs-exact recall@10, sizes, serving memory, hyperparameters
#   assets.extra/evaluation.json      the pipeline's Evaluator report
SAVED_MODEL_FILE = "saved_model.pb"
SCANN_DIR = "scann"
ASSETS_DIR = "assets"
EXTRA_DIR = "assets.extra"
ITEMS_FILE = "items.csv"
REPORT_FILE = "export_report.json"
EVALUATION_FILE = "evaluation.json"
POPULARITY = "popularity"

# Serving signatures. recommend: user_id [batch], history [batch, n], exclude_item_ids [batch, m] (strings, ""
# pads) -> item_ids, scores [batch, TOP_K]. similar: item_id [batch] -> item_ids, scores [batch, TOP_K].
RECOMMEND_SIGNATURE = "serving_default"
SIMILAR_SIGNATURE = "similar_items"
TOP_K = 100  # results per query
# How many items one query may leave out: the API leaves out up to this many of the user's seen items, so a
# model must fetch TOP_K + MAX_EXCLUSIONS candidates. A smaller limit gave users with many items their older
# ones back instead of new ones. A version exported with another limit records its own
# in its export report, which the serving code reads.
MAX_EXCLUSIONS = 2000
