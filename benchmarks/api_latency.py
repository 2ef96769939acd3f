"""/recommend latency and throughput through the API (embedded backend), against the in-process signature
call measured in the same run: one query at a time (the latency baseline) and batches of --batch queries (the
throughput baseline: the most the API's batcher, proxy/batcher.py, can join at that concurrency). Each phase's
CPU time per query: the calling process's for the direct calls; the server process's and this one's (the
load generator) through the API.

Usage: .venv/bin/python -m benchmarks.api_latency --model-base W/serving/recsys --data DIR
       [--requests 2000] [--seconds 60] [--concurrency 1 32] [--batch 32] [--rounds 1]
Loopback only; every phase is bounded in request count and in time. With --rounds R the phases take turns R
times (each a share of the requests and seconds), so that on a shared machine they see the same load.
"""

import argparse
import asyncio
import os
import time

from benchmarks.loopback import cpu_seconds, post_json, served_api, shuffled_users, summary  # noqa: E402
from serving.embedded import EmbeddedModel  # noqa: E402
from serving.history import HistoryStore  # noqa: E402
from tfx_pipeline.data import local_source  # noqa: E402


def direct(model, store, users, n, seconds, batch):
    """The baseline: the SavedModel signature called in this process with what the API would pass, `batch`
    users per call; each query's latency is its call's, throughput counts queries."""
    model.recommend(
        users[:batch], [store.history(u) for u in users[:batch]], [store.seen(u) for u in users[:batch]], 10
    )
    latencies, started = [], time.perf_counter()
    for start in range(0, max(n, batch), batch):
        group = [users[i % len(users)] for i in range(start, start + batch)]
        t = time.perf_counter()
        model.recommend(group, [store.history(u) for u in group], [store.seen(u) for u in group], 10)
        latencies.extend([time.perf_counter() - t] * batch)
        if time.perf_counter() - started > seconds:
            break
    return latencies, time.perf_counter() - started, 0


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
    return latencies, time.perf_counter() - started, errors


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-base", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--batch", type=int, default=32, help="queries per direct call of the batched baseline"
    )
    parser.add_argument("--rounds", type=int, default=1, help="times the phases take turns")
    args = parser.parse_args()

    events = list(local_source.recent_user_events(args.data))
    store = HistoryStore()
    store.add_events(events)
    users = shuffled_users(events)

    model = EmbeddedModel.newest(args.model_base)
    n, seconds = args.requests // args.rounds, args.seconds / args.rounds
    phases = [(f"direct signature call, batch of {b}", b, None) for b in (1, args.batch)]
    phases += [("POST /recommend via the API", c, c) for c in args.concurrency]
    # latencies, seconds, errors, and CPU seconds of the serving process (the caller's for the direct calls)
    # and of the load generator, over the rounds
    measured = {phase: ([], 0.0, 0, 0.0, 0.0) for phase in phases}
    with served_api(args.model_base, args.data) as (port, server_pid):
        for _ in range(args.rounds):
            for phase in phases:
                name, size, concurrency = phase
                serving_pid = server_pid if concurrency else os.getpid()
                cpu_before, own_before = cpu_seconds(serving_pid), time.process_time()
                latencies, elapsed, errors = (
                    asyncio.run(through_api(port, users, n, seconds, concurrency))
                    if concurrency
                    else direct(model, store, users, n, seconds, size)
                )
                serving_cpu = cpu_seconds(serving_pid) - cpu_before
                client_cpu = time.process_time() - own_before if concurrency else 0.0
                measured[phase] = tuple(
                    total + part
                    for total, part in zip(
                        measured[phase], (latencies, elapsed, errors, serving_cpu, client_cpu)
                    )
                )
    rows = [
        (
            name,
            size,
            dict(summary(lat, el), errors=err, cpu_ms=1000 * cpu / len(lat), client_ms=1000 * cl / len(lat)),
        )
        for (name, size, _), (lat, el, err, cpu, cl) in measured.items()
    ]

    one, batched = rows[0][2], rows[1][2]
    print(f"{os.cpu_count()} cores; {len(users)} users; model {args.model_base}")
    print(
        "| path | concurrency or batch | requests | errors | p50 ms | p90 ms | p99 ms | max ms | req/s "
        "| p50 over one query | req/s / batched | CPU ms a query: serving + load generator |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, c, r in rows:
        print(
            f"| {name} | {c} | {r['n']} | {r.get('errors', 0)} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['rps']:.0f} | "
            f"+{r['p50_ms'] - one['p50_ms']:.2f} ms ({r['p50_ms'] / one['p50_ms']:.2f}x) | "
            f"{r['rps'] / batched['rps']:.2f}x | {r['cpu_ms']:.2f} + {r['client_ms']:.2f} |"
        )


if __name__ == "__main__":
    main()
