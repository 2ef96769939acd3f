"""The most an API in front of the in-process model can reach on this machine: a bare ASGI server (no FastAPI,
no middleware, no access log, no impressions: the request's JSON in, the model's list out) joining concurrent
requests into model calls with the API's own batcher (proxy/batcher.py), under uvicorn as `recsys serve` runs
it, beside the direct batched call (api_latency's baseline) and `recsys serve` itself, in turns. If the bare
server stays well below a throughput goal, trimming the API's own work cannot reach it.

Usage: .venv/bin/python -m benchmarks.api_ceiling --model-base W/serving/recsys --data DIR
       [--seconds 10] [--rounds 4] [--concurrency 32]
"""

import argparse
import asyncio
import functools
import json
import os
import subprocess
import sys

import uvicorn

from benchmarks.api_latency import direct, through_api
from benchmarks.loopback import free_port, measured_phase, print_phases, served_api, shuffled_users
from proxy.api_client import ApiClient
from proxy.batcher import Batcher
from serving.embedded import EmbeddedModel
from serving.history import HistoryStore
from tfx_pipeline.data import local_source

K = 10


def bare_app(model: EmbeddedModel, store: HistoryStore):
    """POST with {"user_id": ...}: the user's top K; GET (readiness, /readyz as ApiClient asks): 200 {}."""
    limit = model.catalog.max_exclusions
    call = lambda queries: model.recommend(*map(list, zip(*queries)), K)  # noqa: E731
    batcher = Batcher(call, halves=True)  # as the API's, with the model in its process

    async def app(scope, receive, send):
        body, more = b"", scope["method"] == "POST"
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        answer = {}
        if body:
            user = json.loads(body)["user_id"]
            ranked = await batcher.submit((user, store.history(user), store.seen(user)[:limit]))
            answer = {"user_id": user, "recommendations": [{"item_id": i, "score": s} for i, s in ranked]}
        payload = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def serve_bare(port: int, model_base: str, data: str):
    store = HistoryStore()
    store.add_events(local_source.recent_user_events(data))
    app = bare_app(EmbeddedModel.newest(model_base), store)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-base", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--seconds", type=float, default=10, help="length of one phase")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        return serve_bare(args.serve_bare, args.model_base, args.data)

    events = list(local_source.recent_user_events(args.data))
    store = HistoryStore()
    store.add_events(events)
    users = shuffled_users(events)
    model = EmbeddedModel.newest(args.model_base)
    port = free_port()
    bare = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.api_ceiling", *sys.argv[1:], "--serve-bare", str(port)]
    )
    names = ("direct signature call, batch of 32", "bare ASGI server", "recsys serve")
    measured = {name: ([], 0.0, 0, 0.0, 0.0) for name in names}  # measured_phase()'s, summed
    try:
        with ApiClient(f"http://127.0.0.1:{port}") as client, served_api(args.model_base, args.data) as api:
            client.wait_ready(600)
            servers = {"bare ASGI server": (port, bare.pid), "recsys serve": api}
            load = lambda p, seconds: asyncio.run(  # noqa: E731
                through_api(p, users, 10**9, seconds, args.concurrency)
            )
            for p, _ in servers.values():
                load(p, 5)  # warm-up
            for round_ in range(args.rounds):
                for name in names if round_ % 2 == 0 else names[::-1]:
                    p, pid = servers.get(name, (None, os.getpid()))
                    run = (
                        functools.partial(load, p, args.seconds)
                        if p
                        else functools.partial(direct, model, store, users, 10**9, args.seconds, 32)
                    )
                    part = measured_phase(pid, run)
                    measured[name] = tuple(a + b for a, b in zip(measured[name], part))
    finally:
        bare.terminate()
        bare.wait(timeout=30)

    print_phases(measured, "path", args.concurrency, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
