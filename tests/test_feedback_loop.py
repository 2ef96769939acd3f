"""Hot reload of pushed versions, and the whole loop: serve, feedback, export, retrain, serve the new
model."""

import os
import shutil
import threading
import time

import httpx

import cli.main as cli
from serving.catalog import Catalog
from tests.api_server import post, running_api
from tfx_pipeline import local_runner
from tfx_pipeline.components.pusher import push_version


def wait_for_version(url: str, version: str, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while httpx.get(url + "/readyz").json().get("model_version") != version:
        assert time.monotonic() < deadline, f"version {version} not served within {seconds} s"
        time.sleep(0.2)


def test_a_new_version_is_swapped_in_under_load_without_a_failed_request(pipeline_run, tmp_path):
    base = str(tmp_path / "serving" / "recsys")
    first = os.path.basename(pipeline_run["pushed"])
    shutil.copytree(pipeline_run["pushed"], os.path.join(base, first))
    with running_api(model_base=base, feedback_db=str(tmp_path / "fb.sqlite"), reload_interval=0.2) as (
        url,
        _,
    ):
        statuses, per_client, stop = [], [[] for _ in range(4)], threading.Event()

        def load(versions):
            with httpx.Client(base_url=url, timeout=10) as client:
                while not stop.is_set():
                    response = client.post("/recommend", json={"user_id": "u00003"})
                    statuses.append(response.status_code)
                    versions.append(response.json().get("model_version"))

        threads = [threading.Thread(target=load, args=(versions,)) for versions in per_client]
        for t in threads:
            t.start()
        time.sleep(1)
        second, _ = push_version(pipeline_run["pushed"], base)  # the Pusher's own copy routine
        wait_for_version(url, second)
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join()
    assert statuses and set(statuses) == {200}
    for versions in per_client:
        assert versions[0] == first and versions[-1] == second
        # Once a client got an answer from the new version, it never got one from the old version again.
        assert first not in versions[versions.index(second) :]


def test_feedback_loop_serve_feedback_export_retrain_serve(pipeline_run, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(pipeline_run["data_dir"], data)
    workdir = str(tmp_path / "work")
    base = local_runner.serving_dir(workdir, "recsys")
    first = os.path.basename(pipeline_run["pushed"])
    shutil.copytree(pipeline_run["pushed"], os.path.join(base, first))
    db = str(tmp_path / "feedback.sqlite")
    catalog = Catalog(os.path.join(base, first))
    liked = [i.item_id for i in catalog.items.values() if i.category == "horror"][:15]

    with running_api(model_base=base, feedback_db=db, data_dir=data, reload_interval=0.5) as (url, _):
        assert post(url, "/recommend", {"user_id": "loop-user"}).json()["fallback"] == "popularity"
        events = [
            {
                "user_id": "loop-user",
                "item_id": item,
                "feedback_type": "like",
                "timestamp": f"2030-01-01T00:{n:02d}:00Z",
            }
            for n, item in enumerate(liked * 2)
        ]
        assert post(url, "/feedback/batch", {"events": events}).status_code == 202

        assert cli.main(["feedback", "export", "--db", db, "--out", data]) == 0
        exported = open(os.path.join(data, "interactions-feedback.csv")).read().splitlines()
        assert len(exported) == 1 + len(events)
        assert (
            exported[1] == f"loop-user,{liked[0]},like,,2030-01-01T00:00:00.000000Z,horror,"
        )  # category: catalog

        result = local_runner.run(data, workdir, echo=lambda _: None)
        second = os.path.basename(result["pushed"])
        assert int(second) > int(first)
        wait_for_version(url, second)
        answer = post(url, "/recommend", {"user_id": "loop-user"}).json()
        assert answer["model_version"] == second and "fallback" not in answer
        assert "loop-user" in Catalog(result["pushed"]).known_users  # the new model learned the user
        assert "loop-user" not in catalog.known_users
