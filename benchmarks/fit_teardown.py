"""The seconds between the end of `fit`'s last epoch and `fit`'s return, on the Trainer's in-memory batches
(trainer_module.task.in_memory_batches, without tf.data's autotuning) against the same batches with
autotuning on, in turn, in one process each way: the iterator's teardown waited for the autotuning thread,
which sleeps up to a minute between rounds.

Usage: .venv/bin/python -m benchmarks.fit_teardown [--rounds 3] [--steps 400]
Synthetic events (20,000 events, 2,000 items, 128 dimensions): the wait depends on how long fit ran, not on
the model.
"""

import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _rounds(autotune: bool, rounds: int, steps: int) -> None:
    import numpy as np
    import tensorflow as tf

    import contract
    from trainer_module.hparams import HParams
    from trainer_module.model import compiled_model
    from trainer_module.task import in_memory_batches

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

    class LastEpochEnd(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.at = time.time()

    for _ in range(rounds):
        batches = in_memory_batches(events, 1024, True, 0, repeat=True)
        if autotune:
            options = tf.data.Options()
            options.autotune.enabled = True
            batches = batches.with_options(options)
        last_epoch_end, started = LastEpochEnd(), time.time()
        model.fit(batches, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[last_epoch_end])
        print(
            f"| {'on' if autotune else 'off (the Trainer)'} | {time.time() - started:.0f} "
            f"| {time.time() - last_epoch_end.at:.1f} |",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400, help="steps an epoch (2 epochs a fit)")
    parser.add_argument("--autotune", choices=["on", "off"], help=argparse.SUPPRESS)  # one side, in a child
    args = parser.parse_args()
    if args.autotune:
        _rounds(args.autotune == "on", args.rounds, args.steps)
        return
    print(
        "| tf.data autotuning | fit s | fit's return after its last epoch, s |\n|---|---:|---:|", flush=True
    )
    for autotune in ("on", "off"):
        subprocess.run(
            [sys.executable, "-m", "benchmarks.fit_teardown", "--autotune", autotune]
            + ["--rounds", str(args.rounds), "--steps", str(args.steps)],
            check=True,
        )


if __name__ == "__main__":
    main()
