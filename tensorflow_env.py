"""The environment TensorFlow needs, set once: import this module before anything imports TensorFlow.

TensorFlow Recommenders 0.7.7 needs Keras 2 (the tf-keras package), which TensorFlow 2.16 uses only when
TF_USE_LEGACY_KERAS is set when it is first imported. The entry points import it first: the `recsys` command
(cli/main.py), the Trainer's module (trainer_module/__init__.py, which TFX imports in its own processes), the
benchmarks (benchmarks/__init__.py) and the tests (tests/conftest.py). The images set these in their ENV too
(a TFX container task imports TensorFlow before our code).

TensorFlow 2.16 turns its oneDNN kernels on by itself only on CPUs with AVX512-VNNI, AVX512-BF16, AVX-VNNI or
AMX (`IsMKLEnabled`, tensorflow/core/util/port.cc); elsewhere, as on AVX2 machines, its matmuls run on Eigen,
at about 0.6x the rate (docs/experiments.md, "oneDNN on CPUs without AVX-512").
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
