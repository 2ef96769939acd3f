"""What the benchmarks share: the API started on a free loopback port, the users to ask for, a bare HTTP/1.1
client, percentiles."""

import contextlib
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile

from proxy.api_client import ApiClient


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served_api(
    model_base: str,
    data: str | None = None,
    store: str | None = None,
    env: dict[str, str] | None = None,
    code: str | None = None,
):
    """`recsys serve` in its own process on 127.0.0.1 (a fresh feedback store), its histories from `data` in
    process or from the shared store at `store`, with `env` added to its environment and, given `code` (a
    checkout, e.g. a `git worktree` of another commit), that checkout's code instead of this one's; yields
    (port, pid)."""
    port = free_port()
    histories = ["--data", data] if data else ["--store", store] if store else []
    recsys = [os.path.join(os.path.dirname(sys.executable), "recsys")]
    if code:  # the checkout first on the path, ahead of this one (which the venv's editable install adds)
        recsys = [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {code!r}); import cli.main; sys.exit(cli.main.main())",
        ]
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [
                *recsys,
                "serve",
                "--model-base",
                model_base,
                "--port",
                str(port),
                "--feedback-db",
                os.path.join(tmp, "fb.sqlite"),
                *histories,
            ],
            env={**os.environ, **(env or {})},
        )
        try:
            with ApiClient(f"http://127.0.0.1:{port}") as api:
                api.wait_ready(600)
            yield port, server.pid
        finally:
            server.terminate()
            server.wait(timeout=30)


def shuffled_users(events) -> list[str]:
    """The users of (user_id, item_id, interaction_type) events, in one fixed shuffled order."""
    users = sorted({user for user, _, _ in events})
    random.Random(0).shuffle(users)
    return users


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return int(re.search(r"VmRSS:\s+(\d+) kB", fh.read()).group(1)) / 1024


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """The process's user and system CPU time so far, or one of its threads' (the main thread's id is the
    process's)."""
    with open(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured_phase(pid: int, run) -> tuple:
    """run() -> (latencies, seconds, errors), with the CPU seconds process `pid` and its main thread (an API's
    event loop) spent meanwhile appended."""
    cpu, main_thread = cpu_seconds(pid), cpu_seconds(pid, thread=pid)
    latencies, elapsed, errors = run()
    return latencies, elapsed, errors, cpu_seconds(pid) - cpu, cpu_seconds(pid, thread=pid) - main_thread


def print_phases(measured: dict, kind: str, concurrency: int, rounds: int, seconds: float):
    """measured: name -> measured_phase()'s figures summed over the rounds; a markdown table of them, each
    throughput against the first's."""
    print(f"{os.cpu_count()} cores; concurrency {concurrency}; {rounds} rounds of {seconds:g} s")
    print(
        f"| {kind} | requests | errors | p50 ms | p99 ms | req/s | ratio | CPU ms a request "
        "| of it the main thread (the event loop) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    baseline = None
    for name, (latencies, elapsed, errors, cpu, main_thread) in measured.items():
        s = summary(latencies, elapsed)
        baseline = baseline or s["rps"]
        print(
            f"| {name} | {s['n']} | {errors} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['rps']:.0f} | "
            f"{s['rps'] / baseline:.2f}x | {1000 * cpu / s['n']:.2f} | {1000 * main_thread / s['n']:.2f} |"
        )


async def post_json(reader, writer, port: int, path: str, body: dict) -> int:
    """One HTTP/1.1 keep-alive POST on an open connection; returns the status. A bare client, so the load
    generator's own cost (it shares the 2 cores with the server) stays well below the server's."""
    payload = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(latencies, elapsed):
    ms = [x * 1000 for x in latencies]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
        "rps": len(ms) / elapsed,
    }
