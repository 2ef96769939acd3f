"""How the pushed model is made from the candidate: the one place that decides it (HParams.refit).

The candidate (the Trainer) trains without the eval split, so the Evaluator judges it on events it has not
seen. The model pushed when it is blessed is the RefitTrainer's, trained on every event, in one of two ways:
- "warm_start": the candidate's weights (and its optimizer's state), trained refit_epochs more;
- "full": the recipe trained again from scratch, serving the mean of its scores and the candidate's: an
  independent second model, whose errors partly cancel the candidate's (averaged()).
With "none" there is no RefitTrainer and the candidate itself is pushed. docs/experiments.md measures what
each costs and gains.
"""

import math
import os

import numpy as np
import tensorflow as tf

from serving import exported
from trainer_module.hparams import HParams

# Whether the pushed model serves the mean of its scores and the candidate's.
AVERAGED = {"none": False, "warm_start": False, "full": True}


def has_refit_trainer(hp: HParams) -> bool:
    return hp.refit != "none"


def _checkpoint(model: tf.keras.Model) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(model=model, optimizer=model.optimizer)


def _checkpoint_prefix(serving_model_dir: str) -> str:
    """Beside the Trainer's serving export, inside its model artifact (the Pusher copies only the export)."""
    return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), "warm_start", "checkpoint")


def after_candidate(model: tf.keras.Model, hp: HParams, serving_model_dir: str):
    """What the candidate Trainer leaves for the RefitTrainer: its weights, when the refit starts from
    them."""
    if hp.refit == "warm_start":
        _checkpoint(model).write(_checkpoint_prefix(serving_model_dir))


def refit_epochs(model: tf.keras.Model, hp: HParams, base_model: str) -> int:
    """Prepares the RefitTrainer's compiled model (a warm start restores the candidate's weights into it) and
    returns how many epochs it trains."""
    if hp.refit == "warm_start":
        # Restored as fit creates the variables, the optimizer's slots too.
        _checkpoint(model).read(_checkpoint_prefix(base_model)).expect_partial()
        return hp.refit_epochs
    return hp.epochs


def warm_started_from(hp: HParams, base_model: str | None) -> dict | None:
    """The candidate a RefitTrainer's weights started from, for its report (as averaged_with names the model
    averaged in), or None."""
    if not base_model or hp.refit != "warm_start":
        return None
    return {"model_dir": base_model, "train_splits": exported.read_report(base_model)["train_splits"]}


def averaged_with_candidate(hp: HParams, base_model: str, query_tower, item_ids, embeddings, offsets):
    """(query_tower, embeddings, offsets, what they were averaged with) of the model the RefitTrainer exports:
    its own, or the mean of its scores and the candidate's (its base_model) when hp.refit averages."""
    if not AVERAGED[hp.refit]:
        return query_tower, embeddings, offsets, None
    query_tower, embeddings, offsets = averaged(
        [(query_tower, embeddings, offsets), exported_model(base_model, item_ids)], hp.embedding_dim
    )
    averaged_with = {
        "model_dir": base_model,
        "train_splits": exported.read_report(base_model)["train_splits"],
    }
    return query_tower, embeddings, offsets, averaged_with


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
