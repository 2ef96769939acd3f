"""The embedded backend: the newest pushed version under a model base, loaded in this process."""

import csv
import os
from dataclasses import dataclass

import tensorflow as tf

from trainer_module import export
from transform import features as f


def newest_version(model_base: str) -> str:
    versions = [d for d in os.listdir(model_base) if d.isdigit()] if os.path.isdir(model_base) else []
    if not versions:
        raise FileNotFoundError(f"{model_base}: no pushed model version (expected <model-base>/<integer>/)")
    return max(versions, key=int)


def scann_available() -> bool:
    try:
        import scann  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Item:
    item_id: str
    title: str
    category: str


class EmbeddedModel:
    """Loads one version: the ScaNN SavedModel where ScaNN imports, else the brute-force one."""

    def __init__(self, model_base: str, version: str | None = None):
        self.version = version or newest_version(model_base)
        path = os.path.join(model_base, self.version)
        self.index_kind = "scann" if scann_available() else "brute_force"
        model = export.load(os.path.join(path, export.SCANN_DIR) if self.index_kind == "scann" else path)
        self._model = model  # keeps the signatures' variables alive
        self._recommend = model.signatures[export.RECOMMEND_SIGNATURE]
        self._similar = model.signatures[export.SIMILAR_SIGNATURE]
        with open(os.path.join(path, export.EXTRA_DIR, export.ITEMS_FILE), newline="", encoding="utf-8") as fh:
            self.items = {r[f.ITEM_ID]: Item(r[f.ITEM_ID], r[f.TITLE], r[f.CATEGORY]) for r in csv.DictReader(fh)}

    @staticmethod
    def _pad(rows: list[list[str]]) -> tf.Tensor:
        width = max((len(r) for r in rows), default=0)
        return tf.constant([r + [""] * (width - len(r)) for r in rows], tf.string, shape=[len(rows), width])

    @staticmethod
    def _results(outputs, k: int) -> list[list[tuple[str, float]]]:
        ids, scores = outputs["item_ids"].numpy()[:, :k], outputs["scores"].numpy()[:, :k]
        return [[(i.decode(), float(s)) for i, s in zip(row_ids, row_scores)]
                for row_ids, row_scores in zip(ids, scores)]

    def recommend(self, user_ids: list[str], histories: list[list[str]], exclude: list[list[str]], k: int):
        outputs = self._recommend(user_id=tf.constant(user_ids, tf.string), history=self._pad(histories),
                                  exclude_item_ids=self._pad(exclude))
        return self._results(outputs, k)

    def similar(self, item_ids: list[str], k: int):
        return self._results(self._similar(item_id=tf.constant(item_ids, tf.string)), k)
