"""How long `recsys pipeline run --data /nonexistent` takes to say so: this checkout's CLI against the CLI
of a baseline commit (its whole tree, exported to a temporary directory), alternated, each --repeat times.

The default baseline is the last commit whose CLI imported TFX before checking the data directory.
Usage: .venv/bin/python -m benchmarks.cli_fail_fast [--baseline COMMIT] [--repeat 2]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = ["pipeline", "run", "--data", "/nonexistent", "--workdir"]


BASELINE = "79b864f^1"  # before the CLI checked its arguments ahead of the heavy imports


def seconds(tree: str, command: list[str], workdir: str) -> float:
    """Runs `command` with the code of `tree` first on the path; returns the seconds until it exits."""
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, *command, *COMMAND, workdir],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=tree),
        cwd=tree,
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 2 and "/nonexistent: not a directory" in run.stderr, run.stderr[-2000:]
    return elapsed


def export_tree(commit: str, out: str):
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="the git commit whose CLI is the baseline")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = os.path.join(tmp, "baseline")
        os.makedirs(baseline)
        export_tree(args.baseline, baseline)
        times = {"baseline": [], "this checkout": []}
        for _ in range(args.repeat):
            times["baseline"].append(seconds(baseline, ["tfx_pipeline/cli.py"], tmp))
            times["this checkout"].append(seconds(ROOT, ["-m", "cli.main"], tmp))
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.1f} s ({', '.join(f'{v:.1f}' for v in values)})")
    print(
        f"ratio baseline / this checkout: "
        f"{statistics.median(times['baseline']) / statistics.median(times['this checkout']):.0f}x"
    )


if __name__ == "__main__":
    main()
