"""The API over TF Serving (gRPC and REST), against in-process servers speaking TF Serving's protocols:
answers, outages, requests spread over every TF Serving behind one DNS name, version labels; and `recsys
predict` talking to TF Serving directly."""

import collections
import json
import os
import re
import shutil
import time

import httpx
import pytest

import cli.main as cli
from proxy.recommender import user_bucket
from tests.api_server import post, running_api
from tests.dns_fake import DnsServer
from tests.tf_serving_fakes import GrpcModelServer, RestModelServer, Servable

SERVERS = {"grpc": GrpcModelServer, "rest": RestModelServer}


@pytest.fixture(scope="module")
def servable(pipeline_run):
    """One version with both labels on it, as k8s/models.config starts out."""
    version = int(os.path.basename(pipeline_run["pushed"]))
    return Servable("recsys", pipeline_run["pushed"], labels={"stable": version, "canary": version})


@pytest.fixture(scope="module", params=sorted(SERVERS))
def tf_serving(request, servable):
    server = SERVERS[request.param](servable).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def embedded_api(pipeline_run, tmp_path_factory):
    with running_api(
        model_base=os.path.dirname(pipeline_run["pushed"]),
        data_dir=pipeline_run["data_dir"],
        feedback_db=str(tmp_path_factory.mktemp("e") / "fb.sqlite"),
    ) as (url, _):
        yield url


def test_api_over_tf_serving_answers_as_the_embedded_backend_does(
    tf_serving, embedded_api, pipeline_run, tmp_path
):
    with running_api(
        model_base=os.path.dirname(pipeline_run["pushed"]),
        data_dir=pipeline_run["data_dir"],
        feedback_db=str(tmp_path / "fb.sqlite"),
        backend=tf_serving.url,
        timeout=1.0,
    ) as (url, _):
        assert httpx.get(url + "/readyz").status_code == 200
        for user in ("u00001", "u00002"):
            remote, local = (
                post(url, "/recommend", {"user_id": user}).json(),
                post(embedded_api, "/recommend", {"user_id": user}).json(),
            )
            assert remote["model_version"] == os.path.basename(pipeline_run["pushed"])
            # TF Serving loads the brute-force root; the embedded backend may use ScaNN: compare as sets.
            remote_ids = {r["item_id"] for r in remote["recommendations"]}
            local_ids = {r["item_id"] for r in local["recommendations"]}
            assert len(remote_ids & local_ids) >= 8
        similar = httpx.get(url + "/similar/i00001", params={"k": 3}).json()
        assert len(similar["similar"]) == 3


def test_backend_down_gives_503_with_retry_after_and_unready_then_recovers(
    tf_serving, pipeline_run, tmp_path
):
    with running_api(
        model_base=os.path.dirname(pipeline_run["pushed"]),
        data_dir=pipeline_run["data_dir"],
        feedback_db=str(tmp_path / "fb.sqlite"),
        backend=tf_serving.url,
        timeout=1.0,
    ) as (url, _):
        assert post(url, "/recommend", {"user_id": "u00001"}).status_code == 200
        tf_serving.stop()
        try:
            started = time.monotonic()
            down = post(url, "/recommend", {"user_id": "u00001"})
            assert time.monotonic() - started < 3  # bounded by the backend timeout, never hangs
            assert down.status_code == 503 and down.headers["Retry-After"] == "2"
            assert "backend" in down.json()["error"] and "Traceback" not in down.text
            assert httpx.get(url + "/readyz").status_code == 503
            assert httpx.get(url + "/healthz").status_code == 200  # alive, just not ready
            # Users the model cannot help anyway still get the popularity answer.
            assert post(url, "/recommend", {"user_id": "stranger"}).json()["fallback"] == "popularity"
            # Feedback never depends on the model backend.
            assert (
                post(
                    url, "/feedback", {"user_id": "u00001", "item_id": "i00001", "feedback_type": "view"}
                ).status_code
                == 202
            )
        finally:
            tf_serving.start()
        deadline = time.monotonic() + 10
        while httpx.get(url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert post(url, "/recommend", {"user_id": "u00001"}).status_code == 200


def test_recsys_predict_talks_to_tf_serving(tf_serving, pipeline_run, capsys):
    target = (
        ["--grpc", tf_serving.target]
        if isinstance(tf_serving, GrpcModelServer)
        else ["--rest", tf_serving.url]
    )
    assert (
        cli.main(
            [
                "predict",
                *target,
                "--model",
                "recsys",
                "--user-id",
                "u00001",
                "-k",
                "3",
                "--history",
                "i00001",
                "i00002",
                "--exclude",
                "i00003",
            ]
        )
        == 0
    )
    answer = json.loads(capsys.readouterr().out)
    assert answer["model_version"] == os.path.basename(pipeline_run["pushed"])
    items = [r["item_id"] for r in answer["recommendations"]]
    assert len(items) == 3 and "i00003" not in items
    assert cli.main(["predict", *target, "--model", "nope", "--user-id", "u00001"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^recsys: error: .*nope", err) and "Traceback" not in err


# ---- balancing over TF Serving pods, version labels ----

USERS = [f"u{n:05d}" for n in range(1, 41)]  # known to the model: every request reaches TF Serving


@pytest.fixture(scope="module")
def two_versions(pipeline_run, tmp_path_factory):
    """The pushed version and a newer copy of it under one base: (base, old version dir, new version dir)."""
    base = tmp_path_factory.mktemp("serving") / "recsys"
    old = int(os.path.basename(pipeline_run["pushed"]))
    dirs = [shutil.copytree(pipeline_run["pushed"], base / str(version)) for version in (old, old + 1)]
    return str(base), *map(str, dirs)


def _version(path: str) -> int:
    return int(os.path.basename(path))


@pytest.fixture(scope="module")
def pods_mid_rollout(two_versions):
    """Two TF Serving pods behind one headless-Service-like name (both of its addresses, one port) while a new
    config rolls out: the old pod's labels name the old version, the new pod's the new one."""
    _, old, new = two_versions
    first = GrpcModelServer(
        Servable("recsys", old, labels={"stable": _version(old), "canary": _version(old)})
    ).start()
    second = GrpcModelServer(
        Servable("recsys", new, labels={"stable": _version(new), "canary": _version(new)}),
        host="127.0.0.2",
        port=first.port,
    ).start()
    dns = DnsServer("tf-serving.recsys.test", [first.host, second.host]).start()
    yield f"dns://127.0.0.1:{dns.port}/tf-serving.recsys.test:{first.port}", (first, second)
    dns.stop()
    for server in (first, second):
        server.stop()


def test_api_spreads_grpc_requests_over_every_pod_of_the_name_asking_for_the_stable_label(
    pods_mid_rollout, two_versions, pipeline_run, tmp_path
):
    backend, servers = pods_mid_rollout
    base, old, new = two_versions
    with running_api(
        model_base=base,
        data_dir=pipeline_run["data_dir"],
        feedback_db=str(tmp_path / "fb.sqlite"),
        backend=backend,
        model_name="recsys",
        timeout=2.0,
    ) as (url, _):
        answers = [post(url, "/recommend", {"user_id": user}).json() for user in USERS]
        similar = [httpx.get(f"{url}/similar/i00001", params={"k": 3}).json() for _ in range(10)]
    # Both pods answered a good part (round_robin takes the connected addresses in turn), every request asking
    # for "stable".
    answered = [server.answered for server in servers]
    assert sum(map(len, answered)) == 50 and min(map(len, answered)) >= 15, list(map(len, answered))
    assert {label for a in answered for label, _ in a} == {"stable"}
    # Each answer names the version of the pod that computed it.
    versions = collections.Counter(a["model_version"] for a in answers + similar)
    assert versions == {str(_version(old)): len(answered[0]), str(_version(new)): len(answered[1])}
    assert {a["model_label"] for a in answers + similar} == {"stable"}
    assert all(len(a["recommendations"]) == 10 for a in answers)


def test_a_request_header_asks_for_the_canary_label(pods_mid_rollout, two_versions, pipeline_run, tmp_path):
    backend, servers = pods_mid_rollout
    before = [len(server.answered) for server in servers]
    with running_api(
        model_base=two_versions[0],
        data_dir=pipeline_run["data_dir"],
        feedback_db=str(tmp_path / "fb.sqlite"),
        backend=backend,
        model_name="recsys",
    ) as (url, _):
        answers = [
            post(url, "/recommend", {"user_id": user}, headers={"X-Model-Label": "canary"}).json()
            for user in USERS[:4]
        ]
        wrong = post(url, "/recommend", {"user_id": USERS[0]}, headers={"X-Model-Label": "beta"})
    assert {a["model_label"] for a in answers} == {"canary"}
    assert [label for server, n in zip(servers, before) for label, _ in server.answered[n:]] == ["canary"] * 4
    assert wrong.status_code == 422 and "X-Model-Label" in wrong.json()["error"]
    assert "'stable' or 'canary'" in wrong.json()["error"]


@pytest.fixture(scope="module")
def pod_with_a_canary(two_versions):
    """One TF Serving with both versions: "stable" the old one, "canary" the new one."""
    _, old, new = two_versions
    server = GrpcModelServer(
        Servable("recsys", old, new, labels={"stable": _version(old), "canary": _version(new)})
    ).start()
    yield server
    server.stop()


def test_a_share_of_users_gets_the_canary_each_user_always_the_same(
    pod_with_a_canary, two_versions, pipeline_run, tmp_path
):
    _, old, new = two_versions
    with running_api(
        model_base=two_versions[0],
        data_dir=pipeline_run["data_dir"],
        feedback_db=str(tmp_path / "fb.sqlite"),
        backend=pod_with_a_canary.url,
        model_name="recsys",
        canary_share=0.3,
    ) as (url, _):
        first = {
            user: post(url, "/recommend/batch", {"requests": [{"user_id": user}]}).json()["results"][0]
            for user in USERS
        }
        again = {user: post(url, "/recommend", {"user_id": user}).json() for user in USERS}
        pinned = post(url, "/recommend", {"user_id": USERS[0]}, headers={"X-Model-Label": "stable"}).json()
    canary = {user for user in USERS if user_bucket(user) < 0.3}
    assert 0 < len(canary) < len(USERS)  # both sides have users (the hash spreads them)
    for answers in (first, again):
        assert {u for u, a in answers.items() if a["model_label"] == "canary"} == canary
        assert {u for u, a in answers.items() if a["model_version"] == str(_version(new))} == canary
        assert {a["model_version"] for u, a in answers.items() if u not in canary} == {str(_version(old))}
    assert (pinned["model_label"], pinned["model_version"]) == ("stable", str(_version(old)))
