"""/recommend latency and throughput through the API (embedded backend), against the in-process signature
call measured in the same run: the proxy's overhead as a difference and a ratio.

Usage: .venv/bin/python benchmarks/api_latency.py --model-base W/serving/recsys --data DIR
       [--requests 2000] [--seconds 60] [--concurrency 1 32]
Loopback only; every phase is bounded in request count and in time.
"""

import argparse
import asyncio
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import httpx  # noqa: E402

from proxy.embedded import EmbeddedModel  # noqa: E402
from proxy.history import SEEN_LIMIT, HistoryStore  # noqa: E402
from tfx_pipeline.data import local_source  # noqa: E402


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(latencies, elapsed):
    ms = [x * 1000 for x in latencies]
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms),
            "mean_ms": statistics.fmean(ms), "rps": len(ms) / elapsed}


def direct(model_base, store, users, n, seconds):
    """The baseline: the SavedModel signature called in this process with what the API would pass."""
    model = EmbeddedModel(model_base)
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


async def post_json(reader, writer, port: int, path: str, body: dict) -> int:
    """One HTTP/1.1 keep-alive POST on an open connection; returns the status. A bare client, so the load
    generator's own cost (it shares the 2 cores with the server) stays well below the server's."""
    payload = json.dumps(body).encode()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


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
    store.add_events(local_source.recent_events(local_source.open_data_dir(args.data), SEEN_LIMIT))
    users = sorted(store.users())
    random.Random(0).shuffle(users)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "recsys"), "serve",
                                   "--model-base", args.model_base, "--data", args.data, "--port", str(port),
                                   "--feedback-db", os.path.join(tmp, "fb.sqlite")])
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(url + "/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and server.poll() is None, "the API did not start"
                time.sleep(0.5)
            rows = [("direct signature call (baseline)", 1, direct(args.model_base, store, users, args.requests,
                                                                     args.seconds))]
            for c in args.concurrency:
                rows.append(("POST /recommend via the API", c,
                             asyncio.run(through_api(port, users, args.requests, args.seconds, c))))
        finally:
            server.terminate()
            server.wait(timeout=30)

    base = rows[0][2]
    print(f"{os.cpu_count()} cores; {len(users)} users; model {args.model_base}")
    print("| path | concurrency | requests | errors | p50 ms | p90 ms | p99 ms | max ms | req/s | p50 overhead |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, c, r in rows:
        overhead = (f"+{r['p50_ms'] - base['p50_ms']:.2f} ms ({r['p50_ms'] / base['p50_ms']:.2f}x)"
                    if r is not base else "—")
        print(f"| {name} | {c} | {r['n']} | {r.get('errors', 0)} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['rps']:.0f} | {overhead} |")


if __name__ == "__main__":
    main()
