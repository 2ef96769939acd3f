"""Load on the API: /recommend and /feedback together, first at a fixed rate, then at saturation, each for a
bounded time; errors, latency, throughput, and the server's memory at the start and the end.

Usage: .venv/bin/python -m benchmarks.load --model-base W/serving/recsys --data DIR
       [--rate 200] [--seconds 120] [--concurrency 32] [--feedback-share 0.2]
Loopback only; every phase stops by itself after --seconds.
"""

import argparse
import asyncio
import os
import random
import time

from benchmarks.loopback import post_json, rss_mib, served_api, summary  # noqa: E402
from serving.history import HistoryStore  # noqa: E402
from tfx_pipeline.data import local_source  # noqa: E402


class Traffic:
    """The requests: a random known user's recommendations, or a click of theirs on a random item."""

    def __init__(self, users, items, feedback_share, seed=0):
        self.users, self.items, self.share, self.rng = users, items, feedback_share, random.Random(seed)

    def next(self):
        user = self.rng.choice(self.users)
        if self.rng.random() < self.share:
            return "/feedback", {
                "user_id": user,
                "item_id": self.rng.choice(self.items),
                "feedback_type": "click",
            }
        return "/recommend", {"user_id": user}


async def run_phase(port, traffic, seconds, concurrency, rate=None):
    """rate=None: closed loop, `concurrency` clients back to back (saturation). Else open loop: requests start
    on a fixed schedule and a late one counts its wait in its latency."""
    connections = asyncio.Queue()
    for _ in range(concurrency):
        connections.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies, errors, started = {"/recommend": [], "/feedback": []}, 0, time.perf_counter()

    async def one(scheduled):
        nonlocal errors
        path, body = traffic.next()
        reader, writer = await connections.get()
        try:
            status = await post_json(reader, writer, port, path, body)
        finally:
            connections.put_nowait((reader, writer))
        latencies[path].append(time.perf_counter() - scheduled)
        errors += status >= 400

    if rate:
        tasks, n = [], 0
        while (now := time.perf_counter()) - started < seconds:
            due = started + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(one(started + n / rate)))
            n += 1
        await asyncio.gather(*tasks)
    else:

        async def client():
            while time.perf_counter() - started < seconds:
                await one(time.perf_counter())

        await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    while not connections.empty():
        connections.get_nowait()[1].close()
    return {path: summary(values, elapsed) for path, values in latencies.items()}, errors


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-base", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--rate", type=float, default=200, help="requests per second in the fixed-rate phase")
    parser.add_argument("--seconds", type=float, default=120, help="length of each phase")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--feedback-share", type=float, default=0.2)
    args = parser.parse_args()
    store = HistoryStore()
    store.add_events(local_source.recent_user_events(args.data))
    users = sorted(store.users())
    items = sorted({i for u in users for i in store.seen(u)})
    rows, memory = [], {}
    with served_api(args.model_base, args.data) as (port, pid):
        memory["start"] = rss_mib(pid)
        for name, rate in (
            (f"fixed {args.rate:.0f} req/s", args.rate),
            (f"saturation, {args.concurrency} clients", None),
        ):
            results, errors = asyncio.run(
                run_phase(
                    port, Traffic(users, items, args.feedback_share), args.seconds, args.concurrency, rate
                )
            )
            rows += [(name, path, r, errors) for path, r in results.items()]
            memory[f"after {name}"] = rss_mib(pid)
    print(
        f"{os.cpu_count()} cores; {args.seconds:.0f} s per phase; {args.feedback_share:.0%} feedback; "
        f"model {args.model_base}"
    )
    print("| phase | endpoint | requests | errors (phase) | p50 ms | p99 ms | max ms | req/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, path, r, errors in rows:
        print(
            f"| {name} | {path} | {r['n']} | {errors} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['max_ms']:.1f} | {r['rps']:.0f} |"
        )
    print("\nserver RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))


if __name__ == "__main__":
    main()
