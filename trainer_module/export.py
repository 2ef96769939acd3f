"""Export of the serving signatures (docs/serving-contract.md) as two SavedModels, brute force and ScaNN, and
their check.

The layout of the exported directory and the signatures' names are the contract's (contract.py).
"""

import csv
import json
import math
import os

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

import contract
from serving import exported
from trainer_module.hparams import HParams


class ServingModule(tf.Module):
    """Raw strings in, item ids and scores out; the Transform graph maps users and history to indices."""

    def __init__(
        self,
        tft_layer,
        query_tower,
        item_ids: np.ndarray,
        item_embeddings: np.ndarray,
        item_offsets: np.ndarray,
        index: tfrs.layers.factorized_top_k.TopK,
        hp: HParams,
    ):
        super().__init__()
        self.tft_layer = tft_layer
        self.query_tower = query_tower
        self.num_items = num_items = len(item_ids)
        self.k = min(hp.top_k, num_items)
        self.fetch = _fetch(hp, num_items)
        self.max_exclusions = hp.max_exclusions
        self.item_ids = tf.Variable(item_ids, trainable=False)
        # Item id -> candidate index; an unknown id (and the "" padding) maps to num_items.
        self.item_index = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(item_ids), tf.range(num_items, dtype=tf.int64)),
            default_value=num_items,
        )
        # The index holds [embedding, offset] and users ask with [query, 1]: a score is the cosine plus the
        # item's offset (its learned bias times the temperature: the ranking of the training logits). Items
        # ask with [embedding, 0]: similar items by cosine alone. One extra zero row: an unknown item.
        dim = item_embeddings.shape[1]
        self.item_embeddings = tf.Variable(
            np.vstack(
                [np.hstack([item_embeddings, np.zeros((num_items, 1))]), np.zeros((1, dim + 1))]
            ).astype(np.float32),
            trainable=False,
        )
        self.item_offsets = tf.Variable(item_offsets.astype(np.float32), trainable=False)
        self.index = index
        self.index.index(
            tf.constant(np.hstack([item_embeddings, item_offsets[:, np.newaxis]]).astype(np.float32))
        )

    def _top_k(self, queries, exclude_idx):
        """The k best candidates per query, leaving out the candidate indices in exclude_idx [batch, M]."""
        tf.debugging.assert_less_equal(
            tf.shape(exclude_idx)[1],
            self.max_exclusions,
            message=f"exclude_item_ids: at most {self.max_exclusions} items per query",
        )
        scores, candidates = self.index(queries, k=self.fetch)
        candidates = tf.cast(candidates, tf.int64)
        # Excluded indices as a [batch, items + 1] mask, looked up for the fetched candidates: integer work
        # per query, where comparing id strings pairwise cost milliseconds per query.
        batch = tf.shape(exclude_idx, out_type=tf.int64)[0]
        rows = tf.repeat(tf.range(batch), tf.shape(exclude_idx, out_type=tf.int64)[1])
        mask = tf.scatter_nd(
            tf.stack([rows, tf.reshape(exclude_idx, [-1])], axis=1),
            tf.ones_like(rows, tf.float32),
            tf.stack([batch, tf.constant(self.num_items + 1, tf.int64)]),
        )
        excluded = tf.gather(mask, candidates, batch_dims=1) > 0
        top_scores, positions = tf.math.top_k(tf.where(excluded, -np.inf, scores), k=self.k)
        return {
            "item_ids": tf.gather(self.item_ids, tf.gather(candidates, positions, batch_dims=1)),
            "scores": top_scores,
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None, None], tf.string, name="history"),
            tf.TensorSpec([None, None], tf.string, name="exclude_item_ids"),
        ]
    )
    def recommend(self, user_id, history, exclude_item_ids):
        transformed = self.tft_layer(
            {contract.USER_ID: user_id[:, tf.newaxis], contract.HISTORY: tf.sparse.from_dense(history)}
        )
        queries = self.query(transformed[contract.USER_IDX], transformed[contract.HISTORY_IDX])
        queries = tf.concat([queries, tf.ones_like(queries[:, :1])], 1)
        return self._top_k(queries, self.item_index.lookup(exclude_item_ids))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int64, name="user_idx"),
            tf.SparseTensorSpec([None, None], tf.int64),
        ]
    )
    def query(self, user_idx, history_idx):
        """The query vectors of transformed user and history indices: what averaged() calls of a loaded
        model."""
        return self.query_tower(user_idx, history_idx)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="item_id")])
    def similar(self, item_id):
        item_idx = self.item_index.lookup(item_id)
        queries = tf.gather(self.item_embeddings, item_idx)
        return self._top_k(queries, item_idx[:, tf.newaxis])  # an item is not similar to itself

    def save(self, path: str, options=None):
        # Called once before saving: ScaNN builds its searcher state on first use.
        self.recommend(tf.constant([""]), tf.constant([[""]]), tf.constant([[""]]))
        self.similar(tf.constant([""]))
        tf.saved_model.save(
            self,
            path,
            options=options,
            signatures={
                contract.RECOMMEND_SIGNATURE: self.recommend.get_concrete_function(),
                contract.SIMILAR_SIGNATURE: self.similar.get_concrete_function(),
            },
        )


class AveragedQueryTower(tf.Module):
    """Several models' query towers as one: their query vectors side by side, scaled, then projected."""

    def __init__(self, towers, scale: float, projection: np.ndarray):
        super().__init__()
        self.towers = list(towers)
        self.scale = scale
        self.projection = tf.Variable(projection.astype(np.float32), trainable=False)

    def __call__(self, user_idx, history_idx):
        side_by_side = self.scale * tf.concat([tower(user_idx, history_idx) for tower in self.towers], 1)
        return tf.matmul(side_by_side, self.projection)


class ExportedQueryTower(tf.Module):
    """The query tower of a loaded ServingModule: its `query` function, and the tower that owns its
    variables."""

    def __init__(self, loaded):
        super().__init__()
        self.tower = loaded.query_tower
        self.query = loaded.query

    def __call__(self, user_idx, history_idx):
        return self.query(user_idx, history_idx)


def averaged(models, dim: int):
    """One model whose scores are the mean of the given models' scores, as ServingModule's (query_tower,
    item_embeddings, item_offsets), in `dim` dimensions. Query and item vectors go side by side, both scaled
    by 1/sqrt(n): a dot product is then the mean of the models' cosines, for a user's query (/recommend) and
    an item's (/similar) alike; the offsets are averaged. Both are then projected onto the item vectors' `dim`
    principal directions, exact when they span no more (the catalog's rank), so the index costs what one
    model's does; when they span more, the leading directions hold nearly all of the variance
    (docs/experiments.md)."""
    towers, embeddings, offsets = zip(*models)
    scale = 1 / math.sqrt(len(models))
    side_by_side = scale * np.hstack(embeddings)
    _, _, directions = np.linalg.svd(side_by_side, full_matrices=False)
    projection = directions[:dim].T
    return (
        AveragedQueryTower(towers, scale, projection),
        side_by_side @ projection,
        np.mean(offsets, axis=0),
    )


def exported_model(model_dir: str, item_ids: np.ndarray):
    """(query_tower, item_embeddings, item_offsets) of an exported brute-force SavedModel, whose candidates
    must be `item_ids` in this order (the same vocabulary)."""
    loaded = exported.load(model_dir)
    if not np.array_equal(loaded.item_ids.numpy().astype(str), item_ids):
        raise ValueError(f"{model_dir}: its candidates are not this model's items (another vocabulary)")
    return ExportedQueryTower(loaded), loaded.item_embeddings.numpy()[:-1, :-1], loaded.item_offsets.numpy()


def variable_bytes(num_users: int, num_items: int, dim: int, num_models: int) -> int:
    """The bytes of the brute-force SavedModel's variables (what a server restores), from its sizes: per model
    a user table and an item table of (vocabulary + 1 OOV) x dim floats (the query tower; the history is
    embedded by the item table); for averaged models the projection, (models x dim) x served dimensions, where
    averaged() serves min(dim, items) dimensions; the candidates twice, with one more column
    (ServingModule.item_embeddings, one extra row, and the index), the item offsets and the index's int32
    identifiers. Ids (strings) and their lookup tables are not variables: see serving_memory."""
    served = min(dim, num_items) if num_models > 1 else dim
    tables = num_models * (num_users + 1 + num_items + 1) * dim
    projection = num_models * dim * served if num_models > 1 else 0
    candidates = (num_items + 1) * (served + 1) + num_items * (served + 1) + num_items
    return 4 * (tables + projection + candidates + num_items)


def checkpoint_bytes(model_dir: str) -> int:
    """The bytes of a SavedModel's numeric variables, as its checkpoint records their shapes and types: what
    variable_bytes computes from the sizes."""
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "variables", "variables"))
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    return sum(int(np.prod(shapes[name])) * dtypes[name].size for name in shapes if dtypes[name] != tf.string)


# serving_memory's calibration, measured by benchmarks/serving_memory.py: a fresh process's resident memory
# after loading and calling an export grew by at most these, over exports of a few hundred to 200,000 users.
RESIDENT_PER_VARIABLE_BYTE = 1.1  # the restored variables, with the ids' strings and lookup tables
RESIDENT_PER_VERSION = 64 * 2**20  # the graph, its functions and the session, whatever the sizes


def serving_memory(num_users: int, num_items: int, dim: int, num_models: int) -> int:
    """The resident memory one loaded version of these sizes takes in a serving process (TF Serving holds
    every version of models.config's `specific` list: multiply by the versions loaded)."""
    return round(
        RESIDENT_PER_VARIABLE_BYTE * variable_bytes(num_users, num_items, dim, num_models)
        + RESIDENT_PER_VERSION
    )


def _fetch(hp: HParams, num_items: int) -> int:
    return min(hp.top_k + hp.max_exclusions, num_items)


def brute_force_index(hp: HParams, num_items: int):
    return tfrs.layers.factorized_top_k.BruteForce(k=_fetch(hp, num_items))


def scann_index(hp: HParams, num_items: int):
    leaves = max(1, int(math.sqrt(num_items)))
    fetch = _fetch(hp, num_items)
    # Search enough leaves to hold about twice the items a query fetches.
    to_search = min(
        leaves,
        max(math.ceil(leaves * hp.scann_leaves_to_search_ratio), math.ceil(2 * fetch * leaves / num_items)),
    )
    return tfrs.layers.factorized_top_k.ScaNN(
        k=fetch, num_leaves=leaves, num_leaves_to_search=to_search, num_reordering_candidates=fetch
    )


def write_items(path: str, item_ids, categories, counts, catalog: dict):
    """The candidates with their catalog entry and training event count (the popularity fallback's
    ranking)."""
    with tf.io.gfile.GFile(path, "w") as out:
        writer = csv.writer(out)
        writer.writerow(contract.ITEM_COLUMNS + (contract.POPULARITY,))
        for item, category, count in zip(item_ids, categories, counts):
            title, catalog_category = catalog.get(item, ("", ""))
            writer.writerow([item, title, catalog_category or category, int(count)])


def recall_against_exact(model_dir: str, user_ids, histories, k: int = 10) -> float:
    """Loads both SavedModels fresh and returns the ScaNN results' recall@k of the brute-force results."""
    exact = exported.load(model_dir).signatures[contract.RECOMMEND_SIGNATURE]
    approximate = exported.load(os.path.join(model_dir, contract.SCANN_DIR)).signatures[
        contract.RECOMMEND_SIGNATURE
    ]
    inputs = dict(
        user_id=tf.constant(user_ids),
        history=tf.constant(histories),
        exclude_item_ids=tf.zeros([len(user_ids), 0], tf.string),
    )
    a = approximate(**inputs)["item_ids"].numpy()[:, :k]
    e = exact(**inputs)["item_ids"].numpy()[:, :k]
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, e)]))


def write_report(model_dir: str, report: dict):
    with tf.io.gfile.GFile(os.path.join(model_dir, contract.EXTRA_DIR, contract.REPORT_FILE), "w") as out:
        json.dump(report, out, indent=2, sort_keys=True)
