"""/recommend latency and throughput through the API (embedded backend), against the in-process signature
call measured in the same run: the proxy's overhead as a difference and a ratio.

Usage: .venv/bin/python -m benchmarks.api_latency --model-base W/serving/recsys --data DIR
       [--requests 2000] [--seconds 60] [--concurrency 1 32]
Loopback only; every phase is bounded in request count and in time.
"""

import argparse
import asyncio
import os
import random
import time

from benchmarks.loopback import post_json, served_api, summary  # noqa: E402
from serving.embedded import EmbeddedModel  # noqa: E402
from serving.history import HistoryStore  # noqa: E402
from tfx_pipeline.data import local_source  # noqa: E402


def direct(model_base, store, users, n, seconds):
    """The baseline: the SavedModel signature called in this process with what the API would pass."""
    model = EmbeddedModel.newest(model_base)
    model.recommend([users[0]], [store.history(users[0])], [store.seen(users[0])], 10)
    latencies, started = [], time.perf_counter()
    for i in range(n):
        user = users[i % len(users)]
        t = time.perf_counter()
        model.recommend([user], [store.history(user)], [store.seen(user)], 10)
        latencies.append(time.perf_counter() - t)
        if time.perf_counter() - started > seconds:
            break
    return summary(latencies, time.perf_counter() - started)


async def through_api(port, users, n, seconds, concurrency):
    latencies, errors, started = [], 0, time.perf_counter()
    counter = iter(range(n))

    async def worker():
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await post_json(reader, writer, port, "/recommend", {"user_id": users[0]})
        for i in counter:
            if time.perf_counter() - started > seconds:
                break
            t = time.perf_counter()
            status = await post_json(reader, writer, port, "/recommend", {"user_id": users[i % len(users)]})
            latencies.append(time.perf_counter() - t)
            errors += status != 200
        writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return dict(summary(latencies, time.perf_counter() - started), errors=errors)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-base", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()

    store = HistoryStore()
    store.add_events(local_source.recent_user_events(args.data))
    users = sorted(store.users())
    random.Random(0).shuffle(users)

    with served_api(args.model_base, args.data) as (port, _):
        rows = [
            (
                "direct signature call (baseline)",
                1,
                direct(args.model_base, store, users, args.requests, args.seconds),
            )
        ]
        for c in args.concurrency:
            rows.append(
                (
                    "POST /recommend via the API",
                    c,
                    asyncio.run(through_api(port, users, args.requests, args.seconds, c)),
                )
            )

    base = rows[0][2]
    print(f"{os.cpu_count()} cores; {len(users)} users; model {args.model_base}")
    print(
        "| path | concurrency | requests | errors | p50 ms | p90 ms | p99 ms | max ms | req/s "
        "| p50 overhead |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, c, r in rows:
        overhead = (
            f"+{r['p50_ms'] - base['p50_ms']:.2f} ms ({r['p50_ms'] / base['p50_ms']:.2f}x)"
            if r is not base
            else "—"
        )
        print(
            f"| {name} | {c} | {r['n']} | {r.get('errors', 0)} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['rps']:.0f} | {overhead} |"
        )


if __name__ == "__main__":
    main()
