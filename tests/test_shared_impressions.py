"""With the shared store (--store), the online metrics and the skew of every instance count every instance's
answers and the feedback, wherever each was served or posted: two API instances, each with its own SQLite
file, on one real redis-server."""

import re

import httpx
import pytest

from proxy import redis_store
from tests import tiny_model
from tests.api_server import post, running_api


@pytest.fixture
def two_instances(redis_server, tiny_model_base, tmp_path):
    with (
        running_api(
            model_base=tiny_model_base, store=redis_server.url, feedback_db=str(tmp_path / "a.sqlite")
        ) as (a, _),
        running_api(
            model_base=tiny_model_base, store=redis_server.url, feedback_db=str(tmp_path / "b.sqlite")
        ) as (b, _),
    ):
        yield a, b


def online(url: str) -> dict:
    return httpx.get(url + "/monitor/online", params={"hours": 1, "k": 10}, timeout=30).json()


def test_each_instances_metrics_count_the_answers_and_clicks_of_both(two_instances):
    a, b = two_instances
    answers = [
        post(url, "/recommend", {"user_id": tiny_model.USERS[n % 3]}).json()
        for n, url in enumerate([a] * 6 + [b] * 4)
    ]
    # clicks on the 1st, 4th, 7th and 10th answers, each posted to the other instance than the one that served
    # it
    clicked = answers[::3]
    for n, answer in enumerate(clicked):
        url = b if answers.index(answer) < 6 else a
        event = {
            "user_id": answer["user_id"],
            "item_id": answer["recommendations"][n]["item_id"],
            "feedback_type": "click",
            "request_id": answer["request_id"],
        }
        assert post(url, "/feedback", event).status_code == 202
    [version] = {answer["model_version"] for answer in answers}
    for url in (a, b):  # each instance's reads wait for the writes of its own answers: both in the store now
        online(url)
    for url in (a, b):
        [row] = online(url)["versions"]
        assert (row["model_version"], row["requests"], row["clicks"]) == (version, 10, len(clicked)), url
        items = {i["item_id"] for answer in answers for i in answer["recommendations"]}
        assert row["items"] == len(items) and row["coverage"] == len(items) / len(tiny_model.ITEMS)
        metrics = httpx.get(url + "/metrics", timeout=30).text
        [requests] = re.findall(
            rf'recsys_online_requests{{model_version="{version}",variant=""}} (\S+)', metrics
        )
        assert float(requests) == 10
        # the skew's sources too: every instance's impressions of the version and every event
        skew = httpx.get(url + "/monitor/skew", params={"hours": 1}, timeout=30).json()
        events = {s["source"]: s["events"] for s in skew["sources"]}
        assert events == {"served": 10 * 10, "feedback": len(clicked)}, url


def test_the_shared_metrics_read_only_the_window(redis_server):
    import json
    import time

    import redis

    from proxy import online_metrics
    from proxy.monitor_api import window

    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    since, until = window(1)
    for request_id, seconds_ago in (("old", 2 * 3600), ("new", 60)):
        at = time.time() - seconds_ago
        row = dict(
            impression_id=f"{request_id}:1",
            request_id=request_id,
            served_at=time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(at)),
            user_id="u0",
            position=1,
            item_id="i00",
            model_version="1",
            variant="",
            fallback=0,
        )
        store.xadd(redis_store.MONITOR_IMPRESSIONS, {"rows": json.dumps([row])}, id=f"{int(at * 1000)}-0")
    [row] = online_metrics.shared_metrics(redis_server.url, since, until)
    assert (row.requests, row.items) == (1, 1)
