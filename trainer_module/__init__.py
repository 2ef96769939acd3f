"""Trainer: run_fn (task.py), the two-tower model (model.py), its export (export.py) and hyperparameters."""

import os

# TFRS 0.7.7 needs Keras 2 (tf-keras); this must be set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
