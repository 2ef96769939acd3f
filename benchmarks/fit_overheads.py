"""Two costs of the Trainer's `fit` outside its steps, each against the way it was, one fresh process a fit:

- the first epoch: AutoGraph converting the functions a tf.function calls, tf_keras's included before
  (trainer_module/model.py now leaves them as they are, as AutoGraph does for "keras");
- the end: the seconds between the end of the last epoch and `fit`'s return, which the training iterator's
  teardown spent waiting for tf.data's autotuning thread (it sleeps up to a minute between rounds) before the
  Trainer's in-memory batches turned autotuning off (trainer_module.task.in_memory_batches).

Three ways, in turn, `--rounds` fits each: the Trainer as it is; tf_keras converted; autotuning on.

Usage: .venv/bin/python -m benchmarks.fit_overheads [--rounds 3] [--steps 400]
Synthetic events (20,000 events, 2,000 items, 128 dimensions): the conversion depends on the code, not on
the data; the wait on how long fit ran.
"""

import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WAYS = {
    "the Trainer": ("left as they are", "off"),
    "tf_keras converted": ("converted", "off"),
    "autotuning on": ("left as they are", "on"),
}


def _fit(way: str, steps: int) -> None:
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.autograph.core import config as autograph_config
    from tensorflow.python.autograph.impl import api as autograph_api

    import contract
    from trainer_module.hparams import HParams
    from trainer_module.model import compiled_model
    from trainer_module.task import EpochSeconds, in_memory_batches

    keras_functions, autotune = WAYS[way]
    if keras_functions == "converted":  # without the rule trainer_module.model puts first
        assert str(autograph_config.CONVERSION_RULES[0]) == "DoNotConvert rule for tf_keras"
        autograph_config.CONVERSION_RULES = autograph_config.CONVERSION_RULES[1:]
    converted, convert = [], autograph_api._convert_actual

    def counted(entity, program_ctx):
        converted.append(entity)
        return convert(entity, program_ctx)

    autograph_api._convert_actual = counted

    rng = np.random.default_rng(0)
    n, items, users = 20_000, 2_000, 200
    events = {
        contract.USER_IDX: rng.integers(0, users, n),
        contract.ITEM_IDX: rng.integers(0, items, n),
        contract.CATEGORY_IDX: rng.integers(0, 20, n),
        contract.HISTORY_IDX: rng.integers(-1, items, (n, 20)),
        contract.RATING: np.zeros(n, np.float32),
        contract.RATING_WEIGHT: np.zeros(n, np.float32),
    }
    events = {name: tf.constant(values) for name, values in events.items()}
    model = compiled_model(
        HParams(embedding_dim=128), np.ones(items + 1), users + 1, items + 1, 21, np.arange(items + 1) % 20
    )
    batches = in_memory_batches(events, 1024, True, 0, repeat=True)
    if autotune == "on":
        options = tf.data.Options()
        options.autotune.enabled = True
        batches = batches.with_options(options)

    class Epochs(EpochSeconds):  # the Trainer's epoch timer, and when the last epoch ended
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            self.ended = time.time()

    epochs = Epochs()
    model.fit(batches, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[epochs])
    print(
        f"| {way} | {keras_functions} | {autotune} | {len(converted)} | {epochs.seconds[0]:.1f} "
        f"| {epochs.seconds[1]:.1f} | {time.time() - epochs.ended:.1f} |",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400, help="steps an epoch (2 epochs a fit)")
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # one fit, in a child
    args = parser.parse_args()
    if args.way:
        _fit(args.way, args.steps)
        return
    print(
        "| way | tf_keras's functions | tf.data autotuning | functions converted | first epoch s "
        "| second epoch s | fit's return after its last epoch, s |\n|---|---|---|---:|---:|---:|---:|",
        flush=True,
    )
    for _ in range(args.rounds):
        for way in WAYS:
            subprocess.run(
                [sys.executable, "-m", "benchmarks.fit_overheads", "--way", way, "--steps", str(args.steps)],
                check=True,
            )


if __name__ == "__main__":
    main()
