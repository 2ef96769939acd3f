"""Wall time of `recsys pipeline run` per component on MovieLens, as a Markdown table for BENCHMARKS.md.

Usage: .venv/bin/python benchmarks/pipeline_wall_time.py [MOVIELENS_DIR] [--epochs N]
Baseline measured in the same run: the history SQL alone in DuckDB over the same files (what ExampleGen
adds on top of it is TFX/Beam overhead and tf.Example encoding).
"""

import argparse
import os
import platform
import tempfile
import time

from tfx_pipeline import local_runner  # noqa: E402
from tfx_pipeline.data import local_source, movielens  # noqa: E402
from tfx_pipeline.history_query import history_query  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "src", nargs="?", default=os.path.join("..", "shared", "data", "movielens-latest-small")
    )
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        events = movielens.convert(args.src, data)
        started = time.time()
        rows = len(local_source.open_data_dir(data).execute(history_query("interactions")).fetchall())
        baseline = time.time() - started
        hparams = {"epochs": args.epochs} if args.epochs else None
        started = time.time()
        result = local_runner.run(
            data, os.path.join(tmp, "work"), hyperparameters=hparams, echo=lambda _: None
        )
        total = time.time() - started
    print(
        f"{events} events ({rows} examples), {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}"
    )
    print("| component | wall time (s) |\n|---|---:|")
    for name, seconds in result["timings"].items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"| **total `recsys pipeline run`** (incl. start-up) | {total:.1f} |")
    print(
        f"\nBaseline, same run: history SQL alone in DuckDB {baseline:.2f} s; "
        f"ExampleGen / baseline = {result['timings']['FileBasedExampleGen'] / baseline:.0f}x"
    )


if __name__ == "__main__":
    main()
