"""The API over TF Serving (gRPC and REST), against in-process servers speaking TF Serving's protocols;
and `recsys predict` talking to TF Serving directly."""

import json
import os
import re
import time

import httpx
import pytest

from tests.api_server import post, running_api
from tests.tf_serving_fakes import GrpcModelServer, RestModelServer, Servable
from tfx_pipeline import cli

SERVERS = {"grpc": GrpcModelServer, "rest": RestModelServer}


@pytest.fixture(scope="module")
def servable(pipeline_run):
    return Servable("recsys", pipeline_run["pushed"])


@pytest.fixture(scope="module", params=sorted(SERVERS))
def tf_serving(request, servable):
    server = SERVERS[request.param](servable).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def embedded_api(pipeline_run, tmp_path_factory):
    with running_api(model_base=os.path.dirname(pipeline_run["pushed"]), data_dir=pipeline_run["data_dir"],
                     feedback_db=str(tmp_path_factory.mktemp("e") / "fb.sqlite")) as (url, _):
        yield url


def test_api_over_tf_serving_answers_as_the_embedded_backend_does(tf_serving, embedded_api, pipeline_run, tmp_path):
    with running_api(model_base=os.path.dirname(pipeline_run["pushed"]), data_dir=pipeline_run["data_dir"],
                     feedback_db=str(tmp_path / "fb.sqlite"), backend=tf_serving.url, timeout=1.0) as (url, _):
        assert httpx.get(url + "/readyz").status_code == 200
        for user in ("u00001", "u00002"):
            remote, local = post(url, "/recommend", {"user_id": user}).json(), post(
                embedded_api, "/recommend", {"user_id": user}).json()
            assert remote["model_version"] == os.path.basename(pipeline_run["pushed"])
            # TF Serving loads the brute-force root; the embedded backend may use ScaNN: compare as sets.
            remote_ids = {r["item_id"] for r in remote["recommendations"]}
            local_ids = {r["item_id"] for r in local["recommendations"]}
            assert len(remote_ids & local_ids) >= 8
        similar = httpx.get(url + "/similar/i00001", params={"k": 3}).json()
        assert len(similar["similar"]) == 3


def test_backend_down_gives_503_with_retry_after_and_unready_then_recovers(tf_serving, pipeline_run, tmp_path):
    with running_api(model_base=os.path.dirname(pipeline_run["pushed"]), data_dir=pipeline_run["data_dir"],
                     feedback_db=str(tmp_path / "fb.sqlite"), backend=tf_serving.url, timeout=1.0) as (url, _):
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
            assert post(url, "/feedback", {"user_id": "u00001", "item_id": "i00001",
                                           "feedback_type": "view"}).status_code == 202
        finally:
            tf_serving.start()
        deadline = time.monotonic() + 10
        while httpx.get(url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert post(url, "/recommend", {"user_id": "u00001"}).status_code == 200


def test_recsys_predict_talks_to_tf_serving(tf_serving, pipeline_run, capsys):
    target = ["--grpc", tf_serving.target] if isinstance(tf_serving, GrpcModelServer) else ["--rest", tf_serving.url]
    assert cli.main(["predict", *target, "--model", "recsys", "--user-id", "u00001", "-k", "3",
                     "--history", "i00001", "i00002", "--exclude", "i00003"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["model_version"] == os.path.basename(pipeline_run["pushed"])
    items = [r["item_id"] for r in answer["recommendations"]]
    assert len(items) == 3 and "i00003" not in items
    assert cli.main(["predict", *target, "--model", "nope", "--user-id", "u00001"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^recsys: error: .*nope", err) and "Traceback" not in err
