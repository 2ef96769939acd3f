"""An exported model version as the serving code reads it: its SavedModels, its export report, and the
signatures' inputs and outputs as Python lists."""

import json
import os

import tensorflow as tf

import contract


def scann_available() -> bool:
    try:
        import scann  # noqa: F401
    except ImportError:
        return False
    return True


def load(path: str):
    """Loads one exported SavedModel (the ScaNN one only where `import scann` works)."""
    if os.path.basename(os.path.normpath(path)) == contract.SCANN_DIR:
        import scann  # noqa: F401  registers the ScaNN ops the SavedModel uses
    return tf.saved_model.load(path)


def read_report(model_dir: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(model_dir, contract.EXTRA_DIR, contract.REPORT_FILE)) as fh:
        return json.load(fh)


def padded(rows: list[list[str]]) -> list[list[str]]:
    """Ragged lists of ids as the dense [batch, width] rows the signatures take, "" as padding."""
    width = max((len(r) for r in rows), default=0)
    return [r + [""] * (width - len(r)) for r in rows]


def results(item_ids, scores, k: int) -> list[list[tuple[str, float]]]:
    """The signatures' [batch, K] outputs as lists of (item_id, score), the first k of each."""
    return [
        [(i.decode() if isinstance(i, bytes) else i, float(s)) for i, s in zip(row_ids[:k], row_scores[:k])]
        for row_ids, row_scores in zip(item_ids, scores)
    ]
