"""preprocessing_fn: vocabularies for users, items and categories; history encoded with the item
vocabulary."""

import tensorflow as tf
import tensorflow_transform as tft

import contract


def preprocessing_fn(inputs):
    # Single-valued features arrive as [batch, 1]; the model takes [batch].
    inputs = {k: v if isinstance(v, tf.SparseTensor) else tf.squeeze(v, axis=1) for k, v in inputs.items()}
    item_vocab = tft.vocabulary(inputs[contract.ITEM_ID], vocab_filename=contract.ITEM_VOCAB)
    return {
        contract.USER_IDX: tft.compute_and_apply_vocabulary(
            inputs[contract.USER_ID],
            num_oov_buckets=contract.NUM_OOV_BUCKETS,
            vocab_filename=contract.USER_VOCAB,
        ),
        contract.ITEM_IDX: tft.apply_vocabulary(
            inputs[contract.ITEM_ID], item_vocab, num_oov_buckets=contract.NUM_OOV_BUCKETS
        ),
        # The same vocabulary, so a history item and a candidate item share one index space.
        contract.HISTORY_IDX: tft.apply_vocabulary(
            inputs[contract.HISTORY], item_vocab, num_oov_buckets=contract.NUM_OOV_BUCKETS
        ),
        contract.CATEGORY_IDX: tft.compute_and_apply_vocabulary(
            inputs[contract.CATEGORY],
            num_oov_buckets=contract.NUM_OOV_BUCKETS,
            vocab_filename=contract.CATEGORY_VOCAB,
        ),
        contract.RATING: tf.cast(inputs[contract.RATING], tf.float32),
        contract.RATING_WEIGHT: tf.cast(tf.equal(inputs[contract.INTERACTION_TYPE], "rating"), tf.float32),
    }
