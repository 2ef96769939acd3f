"""TensorFlow's oneDNN kernels on and off (TF_ENABLE_ONEDNN_OPTS, read once a process): the softmax's
matmuls and the Trainer's epochs, each setting in a fresh process, the two in turn so the machine's moods fall
on both.

Usage: .venv/bin/python -m benchmarks.onednn WORKDIR [--rounds 2] [--epochs 3]

WORKDIR is a `recsys pipeline run` workdir (its latest Transform output is trained on, as in
benchmarks/trainer_breakdown.py). tensorflow_env.py turns oneDNN on where TensorFlow would leave it off.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

import tensorflow_transform as tft

from benchmarks.trainer_breakdown import _Loop, fn_args, matmul_seconds, two_tower_args
from trainer_module import task
from trainer_module.hparams import HParams

SETTINGS = ("0", "1")


def measure(workdir: str, epochs: int) -> dict:
    """In this process: the three softmax matmuls' rate, then the Trainer's `fit` one epoch at a time."""
    hp = HParams()
    args = fn_args(workdir, ["train"], os.devnull, {})
    tft_output = tft.TFTransformOutput(args.transform_output)
    sizes, counts, categories = two_tower_args(args, tft_output, hp)
    items = min(hp.sampled_negatives, sizes[1])
    matmuls = matmul_seconds(hp.batch_size, hp.embedding_dim, items)
    batches = task.in_memory_batches(
        task.read_in_memory(args, args.train_files, tft_output), hp.batch_size, True, hp.seed
    )
    loop = _Loop("fit", hp, sizes, counts, categories, batches)
    for _ in range(epochs):
        loop.epoch()
    return {
        "gflops": 6 * hp.batch_size * hp.embedding_dim * items / matmuls / 1e9,
        "epochs": loop.seconds,
        "loss": loop.loss,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs a process (the first includes tracing)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs: at least 2 (the first includes tracing and is not counted)")
    if args.child:
        print(json.dumps(measure(args.workdir, args.epochs)))
        return
    runs = {setting: [] for setting in SETTINGS}
    for _ in range(args.rounds):
        for setting in SETTINGS:
            child = [sys.executable, "-m", "benchmarks.onednn", args.workdir, "--epochs", str(args.epochs)]
            env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=setting)
            out = subprocess.run(child + ["--child"], env=env, check=True, capture_output=True, text=True)
            runs[setting].append(json.loads(out.stdout.splitlines()[-1]))
            print(f"TF_ENABLE_ONEDNN_OPTS={setting}: {runs[setting][-1]}", flush=True)
    later = {s: statistics.median(e for r in rs for e in r["epochs"][1:]) for s, rs in runs.items()}
    print(f"\n{os.cpu_count()} cores, {platform.processor() or platform.machine()}; {args.rounds} rounds\n")
    print(
        "| TF_ENABLE_ONEDNN_OPTS | matmuls GFLOP/s (median) | epoch s (median, after the first) | ratio "
        "| losses |"
    )
    print("|---|---:|---:|---:|---|")
    for setting, rs in runs.items():
        gflops = statistics.median(r["gflops"] for r in rs)
        losses = ", ".join(f"{r['loss']:.4f}" for r in rs)
        ratio = later[setting] / later[SETTINGS[0]]
        print(f"| {setting} | {gflops:.0f} | {later[setting]:.1f} | {ratio:.2f}x | {losses} |")


if __name__ == "__main__":
    main()
