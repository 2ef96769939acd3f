"""The two-tower retrieval model (TFRS) over the transformed features.

Query tower: user id embedding + mean of the history items' embeddings, so a user unseen in training
(the out-of-vocabulary bucket) still gets personal results from their history, and a new interaction
changes the next query without retraining. Candidate tower: item id + category embeddings. The history
items are embedded by the candidate tower's item table: one vector per item, trained by every event it is
the target of, where a separate history table overfitted (docs/experiments.md). No dense layers on top: they
lost too. Both towers end in L2-normalized vectors; a score is their cosine plus (hp.item_bias) a learned
item bias.
"""

import functools

import tensorflow as tf
import tensorflow_recommenders as tfrs
from tensorflow.python.autograph.core import config as autograph_config

import contract
from trainer_module.hparams import HParams

# A tf.function's AutoGraph converts every function it calls except those of the packages on its list: "keras"
# is there, "tf_keras" (the Keras 2 that TFRS needs: tensorflow_env.py) is not, so the first trace in each
# process converted about a thousand of Keras's own functions, most of a Trainer's first epoch
# (docs/experiments.md). Keras's code runs in graphs unconverted, as it did when it was "keras".
autograph_config.CONVERSION_RULES = (
    autograph_config.DoNotConvert("tf_keras"),
    *autograph_config.CONVERSION_RULES,
)


@functools.cache
def native_bfloat16() -> bool:
    """Whether this machine multiplies bfloat16 matrices natively: GPUs from Ampere on (compute capability
    8), or, without GPUs, a CPU with AVX512-BF16 or AMX (Linux's /proc/cpuinfo). Elsewhere TensorFlow
    emulates it."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return all(
            tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)) >= (8, 0)
            for gpu in gpus
        )
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def dense_history(history_idx) -> tf.Tensor:
    """The history as a dense [batch, length] tensor, -1 where a row has no item (as the Trainer's input
    pipeline gives it; the serving signatures give a SparseTensor)."""
    if isinstance(history_idx, tf.SparseTensor):
        return tf.sparse.to_dense(history_idx, default_value=-1)
    return history_idx


def mean_history_embedding(item_embedding: tf.keras.layers.Embedding, history_idx) -> tf.Tensor:
    """Mean of the embeddings of each row's history items (sparse, or dense padded with -1); zeros for an
    empty history."""
    dense = dense_history(history_idx)
    mask = tf.cast(dense >= 0, tf.float32)[..., tf.newaxis]
    vectors = item_embedding(tf.maximum(dense, 0)) * mask
    return tf.math.divide_no_nan(tf.reduce_sum(vectors, axis=1), tf.reduce_sum(mask, axis=1))


class CandidateTower(tf.keras.Model):
    def __init__(self, num_items: int, num_categories: int, dim: int):
        super().__init__()
        self.item_embedding = tf.keras.layers.Embedding(num_items, dim)
        self.category_embedding = tf.keras.layers.Embedding(num_categories, dim)

    def call(self, item_idx: tf.Tensor, category_idx: tf.Tensor) -> tf.Tensor:
        return tf.math.l2_normalize(
            self.item_embedding(item_idx) + self.category_embedding(category_idx), axis=1
        )


class QueryTower(tf.keras.Model):
    def __init__(
        self, num_users: int, item_embedding: tf.keras.layers.Embedding, known_user_history_weight: float
    ):
        super().__init__()
        self.oov_user = num_users - 1  # the out-of-vocabulary bucket is the last index
        self.user_embedding = tf.keras.layers.Embedding(num_users, item_embedding.output_dim)
        self.item_embedding = item_embedding  # the candidate tower's
        self.known_user_history_weight = known_user_history_weight

    def call(self, user_idx: tf.Tensor, history_idx) -> tf.Tensor:
        # A new user is their history; a known user is mostly their embedding, learned from all their events.
        weight = tf.where(tf.equal(user_idx, self.oov_user), 1.0, self.known_user_history_weight)
        history = mean_history_embedding(self.item_embedding, history_idx)
        return tf.math.l2_normalize(self.user_embedding(user_idx) + weight[:, tf.newaxis] * history, axis=1)


def _per_example(summed_loss: tf.Tensor, features) -> tf.Tensor:
    return summed_loss / tf.cast(tf.shape(features[contract.ITEM_IDX])[0], summed_loss.dtype)


class TwoTowerModel(tfrs.Model):
    """Retrieval (softmax over the catalog, over sampled items, or in-batch; the latter two logQ-corrected)
    plus an optional rating head."""

    def __init__(
        self, hp: HParams, num_users: int, num_items: int, num_categories: int, item_counts, item_categories
    ):
        super().__init__()
        self.hp = hp
        self.negatives = hp.negatives_for(num_items)
        self.candidate_tower = CandidateTower(num_items, num_categories, hp.embedding_dim)
        self.query_tower = QueryTower(
            num_users, self.candidate_tower.item_embedding, hp.known_user_history_weight
        )
        # Each item's probability of being a negative (in-batch or sampled): its share of the training events.
        counts = tf.constant(item_counts, tf.float32) + 1.0
        self.item_probability = counts / tf.reduce_sum(counts)
        self.item_categories = tf.constant(item_categories, tf.int64)
        if self.negatives == "all_items":  # the exact softmax over the catalog: no sampling bias to correct
            self.all_items = tf.range(num_items)
        if self.negatives == "sampled":  # drawn by inverting the popularity's cumulative distribution
            self.item_cdf = tf.cumsum(self.item_probability)
        # A learned bias per item added to its logit: popularity, which a cosine alone expresses poorly.
        # Zeros (and not trained) when hp.item_bias is off, so the export is the same either way.
        self.item_bias = tf.keras.layers.Embedding(
            num_items, 1, embeddings_initializer="zeros", trainable=hp.item_bias
        )
        self.retrieval = tfrs.tasks.Retrieval(temperature=hp.temperature, remove_accidental_hits=True)
        if hp.rating_weight > 0:  # built only when trained: Keras refuses unbuilt weights in the gradient
            self.rating_head = tf.keras.Sequential(
                [tf.keras.layers.Dense(hp.embedding_dim, activation="relu"), tf.keras.layers.Dense(1)]
            )
            # Summed like the retrieval loss (TFRS default), which distribution strategies also require.
            self.rating_task = tfrs.tasks.Ranking(
                loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM)
            )

    # The loss is summed over a batch (the gradient's scale, as TFRS has it); what the epoch lines and the
    # history show is its mean per example, so that training and validation read on one scale, and only the
    # loss (no regularization_loss and total_loss lines: the model has no regularizer).
    def train_step(self, features):
        with tf.GradientTape() as tape:
            loss = self.compute_loss(features, training=True)
            total = loss + tf.add_n(self.losses) if self.losses else loss
        gradients = tape.gradient(total, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=True))
        return {"loss": _per_example(loss, features)}

    def test_step(self, features):
        return {"loss": _per_example(self.compute_loss(features, training=False), features)}

    def compute_loss(self, features, training=False):
        user_idx = features[contract.USER_IDX]
        if training and self.hp.user_id_dropout > 0:
            drop = tf.random.uniform(tf.shape(user_idx)) < self.hp.user_id_dropout
            user_idx = tf.where(drop, tf.cast(self.query_tower.oov_user, user_idx.dtype), user_idx)
        history_idx = dense_history(features[contract.HISTORY_IDX])
        if training and self.hp.history_dropout > 0:
            keep = tf.random.uniform(tf.shape(user_idx)) >= self.hp.history_dropout
            history_idx = tf.where(keep[:, tf.newaxis], history_idx, tf.constant(-1, history_idx.dtype))
        query = self.query_tower(user_idx, history_idx)
        item_idx = features[contract.ITEM_IDX]
        candidate = self.candidate_tower(item_idx, features[contract.CATEGORY_IDX])
        if self.negatives == "all_items":
            candidates = self.candidate_tower(self.all_items, self.item_categories)
            logits = self.cosines(query, candidates) / self.hp.temperature
            logits += tf.transpose(self.item_bias(self.all_items))
            loss = self.hp.retrieval_weight * tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=item_idx, logits=logits)
            )
        elif self.negatives == "sampled":
            loss = self.hp.retrieval_weight * self.sampled_softmax(
                query, candidate, item_idx, self.draw_negatives()
            )
        else:
            sampling = tf.gather(self.item_probability, item_idx) if self.hp.logq_correction else None
            # [query, temperature] . [candidate, bias] / temperature = cosine / temperature + bias
            loss = self.hp.retrieval_weight * self.retrieval(
                tf.concat([query, tf.fill([tf.shape(query)[0], 1], self.hp.temperature)], 1),
                tf.concat([candidate, self.item_bias(item_idx)], 1),
                candidate_sampling_probability=sampling,
                candidate_ids=item_idx,
                compute_metrics=False,
            )
        if self.hp.rating_weight > 0:
            predicted = self.rating_head(tf.concat([query, candidate], 1))
            loss += self.hp.rating_weight * self.rating_task(
                labels=features[contract.RATING][:, tf.newaxis],
                predictions=predicted,
                sample_weight=features[contract.RATING_WEIGHT][:, tf.newaxis],
                compute_metrics=False,
            )
        return loss

    def cosines(self, query, candidates) -> tf.Tensor:
        """Every query's cosine with every candidate: the softmax's matmul, most of a step's work, in bfloat16
        when hp.bfloat16_softmax asks and the hardware has it (its two gradient matmuls follow the cast)."""
        if self.hp.bfloat16_softmax and native_bfloat16():
            return tf.cast(
                tf.matmul(tf.cast(query, tf.bfloat16), tf.cast(candidates, tf.bfloat16), transpose_b=True),
                tf.float32,
            )
        return tf.matmul(query, candidates, transpose_b=True)

    def draw_negatives(self) -> tf.Tensor:
        """sampled_negatives item indices drawn with replacement by popularity (item_probability)."""
        drawn = tf.searchsorted(self.item_cdf, tf.random.uniform([self.hp.sampled_negatives]), side="right")
        return tf.cast(tf.minimum(drawn, tf.size(self.item_cdf) - 1), tf.int64)

    def sampled_softmax(self, query, candidate, item_idx, negatives) -> tf.Tensor:
        """The summed softmax loss of each event's target against the drawn negatives, every logit less
        log(expected draws of its item) (the logQ correction, unless off); a negative that is the event's
        own target is left out of its row."""

        def log_q(items):
            if not self.hp.logq_correction:
                return 0.0
            return tf.math.log(self.hp.sampled_negatives * tf.gather(self.item_probability, items))

        negatives = tf.cast(negatives, item_idx.dtype)
        vectors = self.candidate_tower(negatives, tf.gather(self.item_categories, negatives))
        target = (
            tf.reduce_sum(query * candidate, 1) / self.hp.temperature
            + self.item_bias(item_idx)[:, 0]
            - log_q(item_idx)
        )
        others = (
            self.cosines(query, vectors) / self.hp.temperature
            + tf.transpose(self.item_bias(negatives))
            - log_q(negatives)
        )
        others = tf.where(item_idx[:, tf.newaxis] == negatives[tf.newaxis, :], others.dtype.min, others)
        logits = tf.concat([target[:, tf.newaxis], others], 1)
        return tf.reduce_sum(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.zeros_like(item_idx), logits=logits)
        )


def compiled_model(
    hp: HParams, item_counts, num_users: int, num_items: int, num_categories: int, item_categories
) -> TwoTowerModel:
    """A new TwoTowerModel with its optimizer, ready for fit."""
    model = TwoTowerModel(hp, num_users, num_items, num_categories, item_counts, item_categories)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(hp.learning_rate))
    return model
