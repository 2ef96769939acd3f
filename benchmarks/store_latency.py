"""/recommend latency with the users' histories read from the shared store (`recsys serve --store`, a local
redis-server) against the in-process store (`recsys serve --data`), same model, same users and histories, in
the same run: the p50 overhead of the store look-up as a difference and a ratio.

Usage: .venv/bin/python -m benchmarks.store_latency --model-base W/serving/recsys --data DIR
       [--requests 2000] [--rounds 3] [--concurrency 1]
The two APIs run side by side and take turns, `--rounds` times, so that the machine's noise hits both.
"""

import argparse
import asyncio
import os
import tempfile

from benchmarks.api_latency import through_api  # noqa: E402
from benchmarks.loopback import percentile, served_api, shuffled_users  # noqa: E402
from proxy import redis_store  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tfx_pipeline.data import local_source  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-base", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    events = list(local_source.recent_user_events(args.data))
    users = shuffled_users(events)
    p50 = {"in process (--data)": [], "shared store (--store)": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = RedisServer(os.path.join(tmp, "redis")).start()
        try:
            redis_store.load(store.url, events)
            with (
                served_api(args.model_base, data=args.data) as (local_port, _),
                served_api(args.model_base, store=store.url) as (shared_port, _),
            ):
                for _ in range(args.rounds):
                    for name, port in (
                        ("in process (--data)", local_port),
                        ("shared store (--store)", shared_port),
                    ):
                        result = asyncio.run(through_api(port, users, args.requests, 120, args.concurrency))
                        assert result["errors"] == 0, result
                        p50[name].append(result["p50_ms"])
        finally:
            store.stop()
    base, shared = (percentile(v, 50) for v in p50.values())
    print(
        f"{os.cpu_count()} cores; {len(users)} users; {args.requests} requests x {args.rounds} rounds at "
        f"concurrency {args.concurrency}; model {args.model_base}"
    )
    print("| histories from | p50 ms per round | median p50 ms |")
    print("|---|---|---:|")
    for name, values in p50.items():
        print(f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | {percentile(values, 50):.2f} |")
    print(f"store look-up overhead at the median: +{shared - base:.2f} ms ({shared / base:.2f}x)")


if __name__ == "__main__":
    main()
