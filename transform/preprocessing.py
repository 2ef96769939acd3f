"""preprocessing_fn: vocabularies for users, items and categories; history encoded with the item vocabulary."""

import tensorflow as tf
import tensorflow_transform as tft

from transform import features as f


def preprocessing_fn(inputs):
    # Single-valued features arrive as [batch, 1]; the model takes [batch].
    inputs = {k: v if isinstance(v, tf.SparseTensor) else tf.squeeze(v, axis=1) for k, v in inputs.items()}
    item_vocab = tft.vocabulary(inputs[f.ITEM_ID], vocab_filename=f.ITEM_VOCAB)
    return {
        f.USER_IDX: tft.compute_and_apply_vocabulary(
            inputs[f.USER_ID], num_oov_buckets=f.NUM_OOV_BUCKETS, vocab_filename=f.USER_VOCAB
        ),
        f.ITEM_IDX: tft.apply_vocabulary(inputs[f.ITEM_ID], item_vocab, num_oov_buckets=f.NUM_OOV_BUCKETS),
        # The same vocabulary, so a history item and a candidate item share one index space.
        f.HISTORY_IDX: tft.apply_vocabulary(inputs[f.HISTORY], item_vocab, num_oov_buckets=f.NUM_OOV_BUCKETS),
        f.CATEGORY_IDX: tft.compute_and_apply_vocabulary(
            inputs[f.CATEGORY], num_oov_buckets=f.NUM_OOV_BUCKETS, vocab_filename=f.CATEGORY_VOCAB
        ),
        f.RATING: tf.cast(inputs[f.RATING], tf.float32),
        f.RATING_WEIGHT: tf.cast(tf.equal(inputs[f.INTERACTION_TYPE], "rating"), tf.float32),
    }
