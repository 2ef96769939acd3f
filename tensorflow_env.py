"""The environment TensorFlow needs, set once: import this module before anything imports TensorFlow.

TensorFlow Recommenders 0.7.7 needs Keras 2 (the tf-keras package), which TensorFlow 2.16 uses only when
TF_USE_LEGACY_KERAS is set when it is first imported. The entry points import it first: the `recsys` command
(cli/main.py), the Trainer's module (trainer_module/__init__.py, which TFX imports in its own processes), the
benchmarks (benchmarks/__init__.py) and the tests (tests/conftest.py). The images set it in their ENV too.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
