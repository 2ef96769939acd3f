"""The embedded backend: one pushed version loaded in this process, ScaNN where ScaNN imports."""

import os

import tensorflow as tf

from proxy.catalog import Catalog, newest_version
from trainer_module import export


def scann_available() -> bool:
    try:
        import scann  # noqa: F401
    except ImportError:
        return False
    return True


def padded(rows: list[list[str]]) -> list[list[str]]:
    """Ragged lists of ids as the dense [batch, width] rows the signatures take, "" as padding."""
    width = max((len(r) for r in rows), default=0)
    return [r + [""] * (width - len(r)) for r in rows]


def pad(rows: list[list[str]]) -> tf.Tensor:
    dense = padded(rows)
    return tf.constant(dense, tf.string, shape=[len(dense), len(dense[0]) if dense else 0])


def results(item_ids, scores, k: int) -> list[list[tuple[str, float]]]:
    """The signatures' [batch, K] outputs as lists of (item_id, score), the first k of each."""
    return [
        [(i.decode() if isinstance(i, bytes) else i, float(s)) for i, s in zip(row_ids[:k], row_scores[:k])]
        for row_ids, row_scores in zip(item_ids, scores)
    ]


class EmbeddedModel:
    """One exported model directory (a pushed version, or the Trainer's output): its signatures and catalog."""

    def __init__(self, path: str):
        self.model_version = os.path.basename(os.path.normpath(path))
        self.index_kind = "scann" if scann_available() else "brute_force"
        self._model = export.load(
            os.path.join(path, export.SCANN_DIR) if self.index_kind == "scann" else path
        )
        self._recommend = self._model.signatures[export.RECOMMEND_SIGNATURE]
        self._similar = self._model.signatures[export.SIMILAR_SIGNATURE]
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
