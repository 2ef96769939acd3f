"""Trainer: run_fn (task.py), the two-tower model (model.py), its export (export.py) and hyperparameters."""

import tensorflow_env  # noqa: F401  TFX imports the Trainer in processes of its own
