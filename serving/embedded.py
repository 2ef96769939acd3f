"""The embedded backend: one pushed version loaded in this process, ScaNN where ScaNN imports."""

import os

import tensorflow as tf

import contract
from serving.catalog import Catalog, newest_version
from serving.exported import load, padded, results, scann_available


def pad(rows: list[list[str]]) -> tf.Tensor:
    dense = padded(rows)
    return tf.constant(dense, tf.string, shape=[len(dense), len(dense[0]) if dense else 0])


class EmbeddedModel:
    """One exported model directory (a pushed version, or the Trainer's output): its signatures and
    catalog."""

    def __init__(self, path: str):
        self.model_version = os.path.basename(os.path.normpath(path))
        self.index_kind = "scann" if scann_available() else "brute_force"
        self._model = load(os.path.join(path, contract.SCANN_DIR) if self.index_kind == "scann" else path)
        self._recommend = self._model.signatures[contract.RECOMMEND_SIGNATURE]
        self._similar = self._model.signatures[contract.SIMILAR_SIGNATURE]
        self.catalog = Catalog(path)

    @classmethod
    def newest(cls, model_base: str) -> "EmbeddedModel":
        return cls(os.path.join(model_base, newest_version(model_base)))

    def recommend(self, user_ids: list[str], histories: list[list[str]], exclude: list[list[str]], k: int):
        out = self._recommend(
            user_id=tf.constant(user_ids, tf.string), history=pad(histories), exclude_item_ids=pad(exclude)
        )
        return results(out["item_ids"].numpy(), out["scores"].numpy(), k)

    def similar(self, item_ids: list[str], k: int):
        out = self._similar(item_id=tf.constant(item_ids, tf.string))
        return results(out["item_ids"].numpy(), out["scores"].numpy(), k)
