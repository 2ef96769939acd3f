"""How the pushed model is made from the candidate: the one place that decides it (HParams.refit).

The candidate (Trainer) trains without the eval split, so the Evaluator judges it on events it has not seen.
The model pushed when it is blessed is made by the RefitTrainer, on every event, in one of two ways:
- "warm_start": the candidate's weights (and its optimizer's state), trained refit_epochs more;
- "full": the recipe trained again from scratch, serving the mean of its scores and the candidate's (an
  independent second model, whose errors partly cancel the candidate's).
or, with "none", there is no RefitTrainer and the candidate itself is pushed. docs/experiments.md has what
each costs and gains.
"""

import os

import tensorflow as tf

from trainer_module.hparams import HParams

# Whether the pushed model serves the mean of its scores and the candidate's.
AVERAGED = {"none": False, "warm_start": False, "full": True}


def has_refit_trainer(hp: HParams) -> bool:
    return hp.refit != "none"


def _checkpoint(model: tf.keras.Model) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(model=model, optimizer=model.optimizer)


def _checkpoint_prefix(serving_model_dir: str) -> str:
    """Beside the Trainer's serving export, inside its model artifact (which the Pusher does not copy)."""
    return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), "warm_start", "checkpoint")


def after_candidate(model: tf.keras.Model, hp: HParams, serving_model_dir: str):
    """What the candidate Trainer leaves for the RefitTrainer: its weights, when the refit starts from them."""
    if hp.refit == "warm_start":
        _checkpoint(model).write(_checkpoint_prefix(serving_model_dir))


def refit_epochs(model: tf.keras.Model, hp: HParams, base_model: str) -> int:
    """Prepares the RefitTrainer's compiled model (restores the candidate's weights for a warm start) and
    returns how many epochs it trains."""
    if hp.refit == "warm_start":
        # Restored as fit creates the variables (the optimizer's slots too).
        _checkpoint(model).read(_checkpoint_prefix(base_model))
        return hp.refit_epochs
    return hp.epochs
