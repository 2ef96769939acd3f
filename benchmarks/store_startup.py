"""Start-up time and memory of an API instance against the number of users whose histories it can serve:
`recsys serve --store` on a redis-server holding N synthetic users (read nothing at start-up), and, as the
baseline of the same run, `recsys serve --data` with the same users' events in process.

Usage: .venv/bin/python -m benchmarks.store_startup --model-base W/serving/recsys
       [--users 10000 1000000] [--embedded-users 10000 100000] [--events-per-user 10] [--repeat 3]
Starts its own redis-server (Debian's package, as the tests do) in a temporary directory. Each instance is
started --repeat times; the table gives the medians (the machine is shared).
"""

import argparse
import csv
import os
import statistics
import tempfile
import time

import redis  # noqa: E402

from benchmarks.loopback import rss_mib, served_api  # noqa: E402
from proxy import redis_store  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

ITEMS = 200


def synthetic_events(users: int, per_user: int):
    """(user_id, item_id, interaction_type) grouped by user, oldest first."""
    for u in range(users):
        for n in range(per_user):
            yield f"bench-{u:07d}", f"i{(u * 7 + n * 13) % ITEMS:05d}", "click"


def write_data_dir(path: str, users: int, per_user: int):
    os.makedirs(path)
    with open(os.path.join(path, "interactions.csv"), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["user_id", "item_id", "interaction_type", "rating", "timestamp", "category", "features"]
        )
        for n, (user, item, kind) in enumerate(synthetic_events(users, per_user)):
            writer.writerow(
                [
                    user,
                    item,
                    kind,
                    "",
                    f"2024-05-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
                    "c",
                    "",
                ]
            )


def start_instance(model_base: str, repeat: int, **histories) -> tuple[float, float]:
    """Seconds from the process's start to its first 200 on /readyz, and its RSS then (MiB): medians."""
    seconds, rss = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        with served_api(model_base, **histories) as (_, pid):
            seconds.append(time.perf_counter() - started)
            rss.append(rss_mib(pid))
    return statistics.median(seconds), statistics.median(rss)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-base", required=True)
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--embedded-users", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--events-per-user", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for users in args.embedded_users:
            data = os.path.join(tmp, f"data-{users}")
            write_data_dir(data, users, args.events_per_user)
            rows.append(
                (
                    f"--data (in process), {users:,} users",
                    *start_instance(args.model_base, args.repeat, data=data),
                )
            )
        store = RedisServer(os.path.join(tmp, "redis")).start()
        try:
            loaded = 0
            for users in sorted(args.users):
                started = time.perf_counter()
                loaded += redis_store.load(
                    store.url, ((u, i, k) for u, i, k in synthetic_events(users, args.events_per_user))
                )
                memory = redis.Redis.from_url(store.url).info("memory")["used_memory"] / 2**20
                print(
                    f"recsys store load: {users:,} users in the store "
                    f"({time.perf_counter() - started:.1f} s; the store's memory {memory:.0f} MiB)"
                )
                rows.append(
                    (
                        f"--store, {users:,} users in the store",
                        *start_instance(args.model_base, args.repeat, store=store.url),
                    )
                )
        finally:
            store.stop()
    print(f"{os.cpu_count()} cores; {args.events_per_user} events per user; model {args.model_base}")
    print("| instance | start-up to /readyz s | RSS MiB |")
    print("|---|---:|---:|")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
