"""How long `recsys pipeline run --data /nonexistent` takes to say so: this checkout's cli.py against the
cli.py of a baseline commit (run with this checkout's other modules), alternated, each --repeat times.

Usage: .venv/bin/python -m benchmarks.cli_fail_fast [--baseline main] [--repeat 2]
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


def seconds(cli_py: str, workdir: str) -> float:
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, cli_py, *COMMAND, workdir],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
        cwd=ROOT,
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 2 and "/nonexistent: not a directory" in run.stderr, run.stderr[-2000:]
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="the git commit whose cli.py is the baseline")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = os.path.join(tmp, "baseline_cli.py")
        with open(baseline, "w") as out:
            out.write(
                subprocess.run(
                    ["git", "show", f"{args.baseline}:tfx_pipeline/cli.py"],
                    cwd=ROOT,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
        times = {"baseline": [], "this checkout": []}
        for _ in range(args.repeat):
            times["baseline"].append(seconds(baseline, tmp))
            times["this checkout"].append(seconds(os.path.join(ROOT, "tfx_pipeline", "cli.py"), tmp))
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.1f} s ({', '.join(f'{v:.1f}' for v in values)})")
    print(
        f"ratio baseline / this checkout: "
        f"{statistics.median(times['baseline']) / statistics.median(times['this checkout']):.0f}x"
    )


if __name__ == "__main__":
    main()
