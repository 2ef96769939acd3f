"""`recsys pipeline run` on data sets of growing size: wall time and peak RSS per component, and each data
set's ratio to the first (the baseline, measured in the same run).

Usage: nice -n 19 .venv/bin/python -m benchmarks.pipeline_scale DATA_DIR [DATA_DIR ...] [--hparams JSON]
       [--out results.json]
Each DATA_DIR is a data directory (`recsys data sample --out DIR ...`); each run is a fresh process with a
fresh work directory, so no cache and no earlier model carries over. Peak RSS is the largest resident memory
of the run's process and its children, sampled every 0.5 s while the component ran. Each data set's numbers
are printed (and written to --out) as soon as its run ends, so a run cut short still reports the earlier
ones.
"""

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import tempfile
import threading
import time

import psutil

SAMPLE_SECONDS = 0.5


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def one_run(data: str, hparams: dict, results) -> None:
    """In a child process: the pipeline on `data`, with {component: [seconds, peak RSS bytes]} put on
    results."""
    from tfx_pipeline import local_runner

    process, current, peaks, done = psutil.Process(), ["start-up"], {}, threading.Event()

    def sample():
        while not done.wait(SAMPLE_SECONDS):
            peaks[current[0]] = max(peaks.get(current[0], 0), tree_rss(process))

    def echo(line: str):
        if line.startswith("[pipeline] ") and ": done in " in line:  # its peak so far, for a run cut short
            peaks[current[0]] = max(peaks.get(current[0], 0), tree_rss(process))
            line += f" (peak RSS {peaks[current[0]] / 2**30:.2f} GiB)"
        print(line, flush=True)
        if line.startswith("[pipeline] ") and line.endswith(": started"):
            current[0] = line[len("[pipeline] ") : -len(": started")]

    threading.Thread(target=sample, daemon=True).start()
    started = time.time()
    with tempfile.TemporaryDirectory() as work:
        result = local_runner.run(data, os.path.join(work, "work"), hyperparameters=hparams, echo=echo)
    done.set()
    timings = {name: [seconds, peaks.get(name, 0)] for name, seconds in result["timings"].items()}
    timings["total"] = [time.time() - started, max(peaks.values())]
    results.put(timings)


def events_in(data: str) -> int:
    with open(os.path.join(data, "interactions.csv"), "rb") as fh:
        return sum(1 for _ in fh) - 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="+")
    parser.add_argument("--hparams", type=json.loads, default=None)
    parser.add_argument("--out")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    measured = {}
    for data in args.data:
        results = context.Queue()
        child = context.Process(target=one_run, args=(data, args.hparams, results))
        child.start()
        timings = results.get()
        child.join()
        measured[data] = {"events": events_in(data), "timings": timings}
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(measured, fh, indent=2)
        print_table(measured, args.hparams)


def print_table(measured: dict, hparams):
    base, *_ = measured.values()
    print(
        f"\n{os.cpu_count()} cores, {platform.processor() or platform.machine()}; hyperparameters {hparams}"
    )
    header = " | ".join(f"{m['events']} events: s / peak GiB / s vs first" for m in measured.values())
    print(f"| component | {header} |\n|---|" + "---:|" * len(measured))
    for name, (seconds, _) in base["timings"].items():
        cells = []
        for m in measured.values():
            s, rss = m["timings"].get(name, [None, None])
            cells.append(
                "-"
                if s is None
                else f"{s:.1f} / {rss / 2**30:.2f} / {s / seconds:.1f}x"
                if seconds
                else f"{s:.1f}"
            )
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
