"""Two or more versions of the API under the same load, in turn: `recsys serve` started once per variant (a
setting in its environment, or another commit's code from a checkout), then the same /recommend load at
--concurrency sent to each in short phases, in alternating order, so that a shared machine's load falls on
every variant alike. Per variant: throughput, latency, the serving process's CPU per request and its event
loop's (the main thread's) share of it.

Usage: .venv/bin/python -m benchmarks.api_ab --model-base W/serving/recsys --data DIR
       --variant NAME[@CHECKOUT][:VAR=VALUE,...] (two or more) [--seconds 8] [--rounds 8] [--concurrency 32]
e.g.   --variant head --variant no-impressions:RECSYS_IMPRESSION_SAMPLE=0 --variant before@../wt_old
(a checkout: `git worktree add ../wt_old <commit>`). The first variant is the baseline of the ratios.
"""

import argparse
import asyncio
import contextlib
import functools
import os

from benchmarks.api_latency import through_api
from benchmarks.loopback import measured_phase, print_phases, served_api, shuffled_users
from tfx_pipeline.data import local_source


def parse_variant(text: str) -> tuple[str, str | None, dict[str, str]]:
    """NAME[@CHECKOUT][:VAR=VALUE,...] -> (name, checkout or None, environment)."""
    head, _, settings = text.partition(":")
    name, _, code = head.partition("@")
    env = dict(item.split("=", 1) for item in settings.split(",") if item)
    return name, os.path.abspath(code) if code else None, env


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-base", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--variant", action="append", required=True, help="NAME[@CHECKOUT][:VAR=VALUE,...]")
    parser.add_argument("--seconds", type=float, default=8, help="length of one variant's phase")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    if len({name for name, _, _ in variants}) != len(variants) or len(variants) < 2:
        parser.error("give two variants or more, each its own name")

    users = shuffled_users(local_source.recent_user_events(args.data))
    load = lambda port, seconds: asyncio.run(  # noqa: E731
        through_api(port, users, 10**9, seconds, args.concurrency)
    )
    # latencies, seconds, errors, process CPU seconds, main thread CPU seconds
    measured = {name: ([], 0.0, 0, 0.0, 0.0) for name, _, _ in variants}
    with contextlib.ExitStack() as stack:
        servers = [
            (name, *stack.enter_context(served_api(args.model_base, args.data, env=env, code=code)))
            for name, code, env in variants
        ]
        for _, port, _ in servers:
            load(port, 5)  # warm-up
        for round_ in range(args.rounds):
            for name, port, pid in servers if round_ % 2 == 0 else servers[::-1]:
                part = measured_phase(pid, functools.partial(load, port, args.seconds))
                measured[name] = tuple(total + p for total, p in zip(measured[name], part))
    print_phases(measured, "variant", args.concurrency, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
