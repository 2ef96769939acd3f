"""A/B between two model versions on live traffic: the API over HTTP in front of a TF Serving (the in-process
gRPC stand-in) that serves the old version as "stable" and the new one as "canary", half of the users on each
by a hash of their id; a simulated population clicks more on what the canary shows. The API records every
answer as an impression; the report (HTTP, /metrics, `recsys monitor report`) names the canary the winner, and
says "not enough data" while the sample is small."""

import os
import random
import shutil
import sqlite3

import httpx
import pytest

import cli.main as cli
from proxy import ab_report
from proxy.recommender import user_bucket
from tests.api_server import post, running_api
from tests.tf_serving_fakes import GrpcModelServer, Servable

CLICK_RATE = {"stable": 0.10, "canary": 0.25}  # the population's behaviour: it prefers the canary's lists
CANARY_SHARE = 0.5


@pytest.fixture(scope="module")
def ab_api(pipeline_run, tmp_path_factory):
    """The API over a TF Serving with two versions under labels, and the users the model knows."""
    base = tmp_path_factory.mktemp("ab") / "recsys"
    old = int(os.path.basename(pipeline_run["pushed"]))
    old_dir, new_dir = (str(shutil.copytree(pipeline_run["pushed"], base / str(v))) for v in (old, old + 1))
    server = GrpcModelServer(
        Servable("recsys", old_dir, new_dir, labels={"stable": old, "canary": old + 1})
    ).start()
    db = str(tmp_path_factory.mktemp("ab-feedback") / "feedback.sqlite")
    with open(os.path.join(pipeline_run["data_dir"], "interactions.csv")) as fh:
        users = sorted({line.split(",", 1)[0] for line in list(fh)[1:]})
    try:
        with running_api(
            model_base=str(base),
            feedback_db=db,
            data_dir=pipeline_run["data_dir"],
            backend=server.url,
            model_name="recsys",
            canary_share=CANARY_SHARE,
        ) as (url, _):
            yield url, db, users, {"stable": str(old), "canary": str(old + 1)}
    finally:
        server.stop()


def visit(url: str, user: str, rng: random.Random) -> dict:
    """One visit: the user asks for recommendations and, at the rate of the variant they see, clicks one."""
    answer = post(url, "/recommend", {"user_id": user}).json()
    if rng.random() < CLICK_RATE[answer["model_label"]]:
        item = rng.choice(answer["recommendations"])["item_id"]
        event = {
            "user_id": user,
            "item_id": item,
            "feedback_type": "click",
            "request_id": answer["request_id"],
        }
        assert post(url, "/feedback", event).status_code == 202
    return answer


def online(url: str) -> dict:
    return httpx.get(url + "/monitor/online", params={"hours": 1}, timeout=30).json()


def test_the_ab_report_names_the_version_users_click_more_and_not_before_the_sample_is_enough(ab_api, capsys):
    url, db, users, versions = ab_api
    rng = random.Random(22)
    population = [users[n % len(users)] for n in range(2 * len(users))]  # each known user visits twice
    rng.shuffle(population)

    first = [visit(url, user, rng) for user in population[:60]]
    small = online(url)["ab"]
    assert small["verdict"] == ab_report.NOT_ENOUGH_DATA and small["winner"] is None
    assert small["a"]["requests"] + small["b"]["requests"] == 60
    assert "each variant needs at least 100 requests" in small["rule"]

    answers = first + [visit(url, user, rng) for user in population[60:]]
    # the split: sticky by the user id's hash, the variant and its version in every answer and impression
    for answer in answers:
        label = "canary" if user_bucket(answer["user_id"]) < CANARY_SHARE else "stable"
        assert (answer["model_label"], answer["model_version"]) == (label, versions[label])
    report = online(url)  # (the API's reads wait for the impressions being written: the answers do not)
    with sqlite3.connect(db) as con:
        recorded = con.execute(
            "SELECT request_id, user_id, variant, model_version, count(*), min(position), max(position) "
            "FROM impressions GROUP BY request_id, user_id, variant, model_version"
        ).fetchall()
    assert sorted(recorded) == sorted(
        (a["request_id"], a["user_id"], a["model_label"], a["model_version"], 10, 1, 10) for a in answers
    )

    ab = report["ab"]
    assert ab["verdict"] == ab["winner"] == "canary", ab["summary"]
    assert ab["p_value"] < 0.05 and ab["confidence"] == 0.95 and "two-proportion z-test" in ab["test"]
    low, high = ab["interval"]
    assert 0 < low < ab["difference"] < high
    assert ab["a"]["requests"] >= 100 and ab["b"]["requests"] >= 100
    by_variant = {r["variant"]: r for r in report["versions"]}
    assert {v: r["model_version"] for v, r in by_variant.items()} == versions
    assert by_variant["canary"]["ctr"] > by_variant["stable"]["ctr"]
    assert all(r["fallback_share"] == 0 and 0 < r["coverage"] <= 1 for r in report["versions"])

    scraped = httpx.get(url + "/metrics", timeout=30).text
    for variant, row in by_variant.items():
        line = f'recsys_online_ctr{{model_version="{row["model_version"]}",variant="{variant}"}}'
        assert any(
            s.startswith(line) and float(s.split()[-1]) == pytest.approx(row["ctr"])
            for s in scraped.splitlines()
        )

    assert cli.main(["monitor", "report", "--db", db, "--hours", "1"]) == 0
    printed = capsys.readouterr().out
    assert "A/B on ctr: winner canary" in printed and "95% interval" in printed
    assert versions["canary"] in printed and versions["stable"] in printed
