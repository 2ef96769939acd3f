"""A tiny model version, pushed as the pipeline pushes one, built in seconds without running the pipeline:
random embeddings for 3 users and 40 items behind the real export code (trainer_module/export.py), both
indexes, the items file, the user vocabulary and the export report. For the fast tests of the serving code and
the API, which need some model, not a good one."""

import os

import numpy as np
import tensorflow as tf

import contract
from trainer_module import export
from trainer_module.hparams import HParams
from trainer_module.model import QueryTower

USERS = ["u0", "u1", "u2"]
ITEMS = [f"i{n:02d}" for n in range(40)]  # ScaNN trains its quantizer on no fewer than 16 items
CATEGORIES = ["abcd"[n % 4] for n in range(len(ITEMS))]
DIM = 4


class Vocabularies(tf.Module):
    """Stands in for the Transform layer: raw user and history ids to indices (unknown: the last index)."""

    def __init__(self, users, items):
        super().__init__()
        self.users, self.items = (
            tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.range(len(ids), dtype=tf.int64)),
                len(ids),
            )
            for ids in (users, items)
        )

    def __call__(self, features):
        history = features[contract.HISTORY]
        return {
            contract.USER_IDX: self.users.lookup(features[contract.USER_ID][:, 0]),
            contract.HISTORY_IDX: tf.SparseTensor(
                history.indices, self.items.lookup(history.values), history.dense_shape
            ),
        }


def push(model_base: str, version: int = 1, seed: int = 0) -> str:
    """Writes one version under model_base; returns its directory."""
    rng = np.random.default_rng(seed)
    hp = HParams()
    item_embedding = tf.keras.layers.Embedding(len(ITEMS) + 1, DIM)
    tower = QueryTower(len(USERS) + 1, item_embedding, hp.known_user_history_weight)
    tower(tf.constant([0]), tf.sparse.from_dense(tf.constant([[1]], tf.int64)))  # builds the weights
    tower.user_embedding.set_weights([rng.normal(size=(len(USERS) + 1, DIM))])
    items = rng.normal(size=(len(ITEMS), DIM)).astype(np.float32)
    item_embedding.set_weights([np.vstack([items, np.zeros((1, DIM))])])
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    offsets = rng.normal(size=len(ITEMS)).astype(np.float32)
    item_ids = np.array(ITEMS)
    path = os.path.join(model_base, str(version))
    for index, directory in ((export.scann_index, contract.SCANN_DIR), (export.brute_force_index, "")):
        module = export.ServingModule(
            Vocabularies(USERS, ITEMS), tower, item_ids, items, offsets, index(hp, len(ITEMS)), hp
        )
        module.save(os.path.join(path, directory), tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
    os.makedirs(os.path.join(path, contract.EXTRA_DIR), exist_ok=True)
    os.makedirs(os.path.join(path, contract.ASSETS_DIR), exist_ok=True)
    with open(os.path.join(path, contract.ASSETS_DIR, contract.USER_VOCAB), "w") as out:
        out.write("\n".join(USERS) + "\n")
    catalog = {item: (f"Title {item}", category) for item, category in zip(ITEMS, CATEGORIES)}
    export.write_items(
        os.path.join(path, contract.EXTRA_DIR, contract.ITEMS_FILE),
        ITEMS,
        CATEGORIES,
        range(len(ITEMS), 0, -1),
        catalog,
    )
    export.write_report(path, {"hyperparameters": {"max_exclusions": hp.max_exclusions}})
    return path
