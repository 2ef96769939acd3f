"""The API run for real on 127.0.0.1 over the model the pipeline pushed (embedded backend)."""

import collections
import concurrent.futures
import csv
import json
import os
import shutil
import sqlite3
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import cli.main as cli
from proxy import schemas
from tests.api_server import post, running_api


@pytest.fixture(scope="module")
def seen(sample_split):
    data_dir, _ = sample_split
    events = collections.defaultdict(list)
    with open(os.path.join(data_dir, "interactions.csv"), newline="") as fh:
        for r in sorted(csv.DictReader(fh), key=lambda r: r["timestamp"]):
            events[r["user_id"]].append(r["item_id"])
    return events


@pytest.fixture(scope="module")
def api(pipeline_run, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("api") / "feedback.sqlite")
    with running_api(
        model_base=os.path.dirname(pipeline_run["pushed"]), feedback_db=db, data_dir=pipeline_run["data_dir"]
    ) as (url, _):
        yield url, db


def recommend(url, **body):
    response = post(url, "/recommend", body)
    assert response.status_code == 200, response.text
    return response.json()


def ids(answer):
    return [r["item_id"] for r in answer["recommendations"]]


def test_health_readiness_and_openapi(api, pipeline_run):
    url, _ = api
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(url + "/readyz").json()
    assert ready == {"status": "ready", "model_version": os.path.basename(pipeline_run["pushed"])}
    paths = httpx.get(url + "/openapi.json").json()["paths"]
    assert {"/recommend", "/recommend/batch", "/similar/{item_id}", "/feedback", "/feedback/batch"} <= set(
        paths
    )


def test_recommend_known_user_leaves_out_seen_items_by_default(api, seen, pipeline_run):
    url, _ = api
    user = sorted(seen)[0]
    answer = recommend(url, user_id=user)
    assert answer["user_id"] == user and "fallback" not in answer
    assert answer["model_version"] == os.path.basename(pipeline_run["pushed"])
    assert len(answer["request_id"]) == 32
    assert len(answer["recommendations"]) == 10
    assert not set(ids(answer)) & set(seen[user])
    first = answer["recommendations"][0]
    assert first["title"] and first["category"] and isinstance(first["score"], float)
    with_seen = recommend(url, user_id=user, exclude_seen=False, num_recommendations=50)
    assert set(ids(with_seen)) & set(seen[user])  # the user's own items rank high when allowed


def test_exclude_item_ids_and_num_recommendations(api, seen):
    url, _ = api
    user = sorted(seen)[1]
    top = ids(recommend(url, user_id=user, num_recommendations=3))
    assert len(top) == 3
    assert not set(top) & set(ids(recommend(url, user_id=user, num_recommendations=3, exclude_item_ids=top)))


def test_unknown_user_without_history_gets_flagged_popularity(api, seen):
    url, _ = api
    answer = recommend(url, user_id="nobody-at-all", num_recommendations=5)
    assert answer["fallback"] == "popularity"
    counts = collections.Counter(i for items in seen.values() for i in items)
    assert ids(answer) == [i for i, _ in counts.most_common(5)]


def test_feedback_is_stored_before_202_and_changes_the_next_recommendation(api):
    url, db = api
    before = recommend(url, user_id="brand-new-user")
    assert before["fallback"] == "popularity"
    clicked = before["recommendations"][0]["item_id"]
    response = post(
        url,
        "/feedback",
        {
            "user_id": "brand-new-user",
            "item_id": clicked,
            "feedback_type": "click",
            "request_id": before["request_id"],
        },
    )
    assert response.status_code == 202
    event_id = response.json()["event_id"]
    row = (
        sqlite3.connect(db)
        .execute(
            "SELECT user_id, item_id, interaction_type, request_id FROM feedback WHERE event_id = ?",
            (event_id,),
        )
        .fetchone()
    )
    assert row == ("brand-new-user", clicked, "click", before["request_id"])
    after = recommend(url, user_id="brand-new-user")
    assert "fallback" not in after  # personal now: the click is its history
    assert clicked not in ids(after)  # and it is seen
    assert ids(after) != ids(before)


def test_a_click_changes_a_known_users_next_recommendation(api, seen):
    url, _ = api
    user = sorted(seen)[4]
    before = ids(recommend(url, user_id=user))
    for item in before[5:8]:
        assert (
            post(url, "/feedback", {"user_id": user, "item_id": item, "feedback_type": "like"}).status_code
            == 202
        )
    after = ids(recommend(url, user_id=user))
    assert not set(before[5:8]) & set(after)
    assert after != [i for i in before if i not in before[5:8]]  # the history moved, not only the exclusions


def test_batch_forms(api, seen):
    url, db = api
    users = sorted(seen)[:3] + ["nobody-2"]
    response = post(
        url, "/recommend/batch", {"requests": [{"user_id": u, "num_recommendations": 4} for u in users]}
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["user_id"] for r in results] == users
    assert all(len(r["recommendations"]) == 4 for r in results)
    assert [r.get("fallback") for r in results] == [None, None, None, "popularity"]
    assert ids(results[0]) == ids(recommend(url, user_id=users[0], num_recommendations=4))
    events = [{"user_id": "batch-user", "item_id": f"i{n:05d}", "feedback_type": "view"} for n in range(5)]
    response = post(url, "/feedback/batch", {"events": events})
    assert response.status_code == 202
    stored = (
        sqlite3.connect(db).execute("SELECT count(*) FROM feedback WHERE user_id = 'batch-user'").fetchone()
    )
    assert len(response.json()["event_ids"]) == 5 and stored == (5,)


def test_similar_items(api, seen):
    url, _ = api
    item = seen[sorted(seen)[0]][0]
    response = httpx.get(f"{url}/similar/{item}", params={"k": 5})
    assert response.status_code == 200
    body = response.json()
    assert (
        body["item_id"] == item
        and len(body["similar"]) == 5
        and item not in [s["item_id"] for s in body["similar"]]
    )
    assert all(s["title"] for s in body["similar"])
    missing = httpx.get(f"{url}/similar/no-such-item")
    assert missing.status_code == 404 and "item_id" in missing.json()["error"]
    assert httpx.get(f"{url}/similar/{item}", params={"k": 0}).status_code == 422


def scrape(url: str) -> dict[tuple, float]:
    """/metrics as {(sample name, ((label, value), ...)): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(httpx.get(url + "/metrics").text)
        for sample in family.samples
    }


def test_metrics_follow_the_prometheus_conventions(pipeline_run, tmp_path):
    version = os.path.basename(pipeline_run["pushed"])
    base = tmp_path / "serving"
    shutil.copytree(pipeline_run["pushed"], base / version)
    with running_api(model_base=str(base), feedback_db=str(tmp_path / "fb.sqlite"), reload_interval=0.2) as (
        url,
        _,
    ):
        first = scrape(url)  # before any request: the loaded model is there already
        assert first[("recsys_model_info", (("label", ""), ("version", version)))] == 1
        assert first[("process_resident_memory_bytes", ())] > 100e6  # TensorFlow and the model
        assert ("process_cpu_seconds_total", ()) in first and ("process_open_fds", ()) in first
        assert any(name == "python_info" for name, _ in first)
        assert first[("recsys_model_reload_failures_total", ())] == 0
        assert not any(name == "recsys_feedback_backlog" for name, _ in first)  # no sink to deliver to

        assert recommend(url, user_id="u00001")["recommendations"]
        assert httpx.get(f"{url}/similar/i00001").status_code == 200
        assert post(url, "/recommend", {"user_id": ""}).status_code == 422
        broken = base / str(int(version) + 1)  # a newer push that does not load
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        deadline = time.monotonic() + 30
        while scrape(url)[("recsys_model_reload_failures_total", ())] < 1:
            assert time.monotonic() < deadline, "the failed load was not counted"
            time.sleep(0.2)

        metrics = scrape(url)
        ok = (("handler", "/recommend"), ("method", "POST"), ("status", "200"))
        assert metrics[("http_requests_total", ok)] == 1
        assert metrics[
            ("http_requests_total", (("handler", "/recommend"), ("method", "POST"), ("status", "422")))
        ]
        assert metrics[
            ("http_requests_total", (("handler", "/similar/{item_id}"), ("method", "GET"), ("status", "200")))
        ]
        assert metrics[
            ("http_request_duration_seconds_count", (("handler", "/recommend"), ("method", "POST")))
        ]
        assert not any(dict(labels).get("handler") == "/metrics" for _, labels in metrics)
        for method in ("recommend", "similar"):
            assert metrics[("recsys_model_call_seconds_count", (("method", method),))] >= 1
        assert metrics[("recsys_batch_size_count", ())] >= 1
        assert metrics[("recsys_batch_size_bucket", (("le", "1.0"),))] >= 1
        assert metrics[("recsys_model_info", (("label", ""), ("version", version)))] == 1  # still serving


@pytest.mark.parametrize(
    "body, status, names",
    [
        ({"user_id": "u", "num_recommendations": 0}, 422, "num_recommendations"),
        ({"user_id": "u", "num_recommendations": 101}, 422, "num_recommendations"),
        ({"user_id": "u", "num_recommendations": 10**12}, 422, "num_recommendations"),
        ({"user_id": "u", "num_recommendations": "3"}, 422, "num_recommendations"),
        ({"user_id": "u", "num_recommendations": 2.5}, 422, "num_recommendations"),
        ({"user_id": ""}, 422, "user_id"),
        ({"user_id": "   "}, 422, "user_id"),
        ({"user_id": 42}, 422, "user_id"),
        ({"user_id": "a\x00b"}, 422, "user_id"),
        ({"user_id": "x" * 300}, 422, "user_id"),
        ({}, 422, "user_id"),
        ({"user_id": "u", "exclude_item_ids": "i1"}, 422, "exclude_item_ids"),
        ({"user_id": "u", "exclude_item_ids": [""]}, 422, "exclude_item_ids.0"),
        ({"user_id": "u", "exclude_item_ids": ["i"] * (schemas.MAX_EXCLUDED + 1)}, 422, "exclude_item_ids"),
        ({"user_id": "u", "exclude_seen": "yes"}, 422, "exclude_seen"),
        ({"user_id": "u", "colour": "red"}, 422, "colour"),
        ([1, 2], 422, "body"),
    ],
)
def test_bad_recommend_requests_name_the_field(api, body, status, names):
    url, _ = api
    response = post(url, "/recommend", body)
    assert response.status_code == status, response.text
    assert names in response.json()["error"]


@pytest.mark.parametrize(
    "body, names",
    [
        ({"user_id": "u", "item_id": "i", "feedback_type": "love"}, "feedback_type"),
        ({"user_id": "u", "item_id": "i", "feedback_type": "rating"}, "rating"),
        ({"user_id": "u", "item_id": "i", "feedback_type": "rating", "rating": "5"}, "rating"),
        ({"user_id": "u", "item_id": "i", "feedback_type": "rating", "rating": 11}, "rating"),
        ({"user_id": "u", "item_id": "", "feedback_type": "click"}, "item_id"),
        ({"user_id": "u", "feedback_type": "click"}, "item_id"),
        ({"user_id": "u", "item_id": "i", "feedback_type": "click", "timestamp": "yesterday"}, "timestamp"),
    ],
)
def test_bad_feedback_names_the_field_and_stores_nothing(api, body, names):
    url, db = api
    count = sqlite3.connect(db).execute("SELECT count(*) FROM feedback").fetchone()
    response = post(url, "/feedback", body)
    assert response.status_code == 422, response.text
    assert names in response.json()["error"]
    assert sqlite3.connect(db).execute("SELECT count(*) FROM feedback").fetchone() == count


def test_malformed_json_oversized_body_and_batches(api):
    url, _ = api
    response = httpx.post(
        url + "/recommend", content=b'{"user_id": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]
    response = httpx.post(
        url + "/recommend", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    response = httpx.post(url + "/recommend", content=b"user_id=u")
    assert response.status_code == 422 and "JSON object" in response.json()["error"]
    huge = b'{"user_id": "' + b"x" * (2 << 20) + b'"}'
    response = httpx.post(url + "/recommend", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "body" in response.json()["error"]
    too_many = {"requests": [{"user_id": "u"}] * (schemas.MAX_BATCH_USERS + 1)}
    response = post(url, "/recommend/batch", too_many)
    assert response.status_code == 422 and "requests" in response.json()["error"]
    assert httpx.get(url + "/healthz").status_code == 200  # unaffected


def test_api_key_when_configured(pipeline_run, tmp_path, capsys):
    with running_api(
        model_base=os.path.dirname(pipeline_run["pushed"]),
        feedback_db=str(tmp_path / "fb.sqlite"),
        api_key="s3cret",
    ) as (url, _):
        assert httpx.get(url + "/healthz").status_code == 200  # probes need no key
        refused = post(url, "/recommend", {"user_id": "u00001"})
        assert refused.status_code == 401 and "X-API-Key" in refused.json()["error"]
        assert (
            post(url, "/recommend", {"user_id": "u00001"}, headers={"X-API-Key": "wrong"}).status_code == 401
        )
        assert (
            post(url, "/recommend", {"user_id": "u00001"}, headers={"X-API-Key": "s3cret"}).status_code == 200
        )
        argv = ["recommend", "--api", url, "--user-id", "u00001", "-k", "3"]
        assert (
            cli.main(argv) == 2 and "HTTP 401: missing or wrong X-API-Key header" in capsys.readouterr().err
        )
        assert cli.main(argv + ["--api-key", "s3cret"]) == 0
        assert len(json.loads(capsys.readouterr().out)["recommendations"]) == 3


def test_the_clients_request_id_is_the_answers(api):
    url, _ = api
    answer = post(url, "/recommend", {"user_id": "u00001"}, headers={"X-Request-ID": "app-7f3a"})
    assert answer.headers["X-Request-ID"] == "app-7f3a" and answer.json()["request_id"] == "app-7f3a"
    batch = post(
        url,
        "/recommend/batch",
        {"requests": [{"user_id": "u00001"}, {"user_id": "u00002"}]},
        headers={"X-Request-ID": "app-7f3b"},
    )
    assert [r["request_id"] for r in batch.json()["results"]] == ["app-7f3b-0", "app-7f3b-1"]
    generated = post(url, "/recommend", {"user_id": "u00001"})
    assert generated.json()["request_id"] == generated.headers["X-Request-ID"]


# Found by the schema-driven fuzzing (tests/test_api_fuzz.py); one regression test each.


def test_a_body_that_is_not_utf8_or_nested_too_deeply_is_a_named_400(api):
    url, _ = api
    response = httpx.post(
        url + "/recommend", content=b'{"user_id": "\xff"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"].startswith(
        "malformed JSON: the body is not UTF-8"
    )
    response = httpx.post(
        url + "/recommend",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["error"] == "malformed JSON: nested too deeply"


@pytest.mark.parametrize(
    "timestamp, names",
    [
        (0, "ISO 8601"),  # pydantic alone reads numbers and digit strings as Unix time
        ("1700000000", "ISO 8601"),
        ("0001-01-01T00:00:00+05:00", "1970 to 2999"),  # was a 500: out of datetime's range once in UTC
        ("9999-12-31T23:59:59-23:59", "1970 to 2999"),
        ("0999-01-01T00:00:00Z", "1970 to 2999"),  # was stored as "999-01-01T...", which the pipeline refuses
    ],
)
def test_timestamps_outside_iso_text_and_years_1970_to_2999_are_refused(api, timestamp, names):
    url, db = api
    count = sqlite3.connect(db).execute("SELECT count(*) FROM feedback").fetchone()
    response = post(
        url, "/feedback", {"user_id": "u", "item_id": "i", "feedback_type": "click", "timestamp": timestamp}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith("timestamp:") and names in response.json()["error"]
    assert sqlite3.connect(db).execute("SELECT count(*) FROM feedback").fetchone() == count


def test_a_timestamp_with_an_offset_is_stored_in_utc(api):
    url, db = api
    response = post(
        url,
        "/feedback",
        {
            "user_id": "u-ts",
            "item_id": "i00001",
            "feedback_type": "click",
            "timestamp": "1970-01-01T00:30:00+01:00",
        },
    )
    assert response.status_code == 202
    stored = (
        sqlite3.connect(db)
        .execute("SELECT timestamp FROM feedback WHERE event_id = ?", (response.json()["event_id"],))
        .fetchone()
    )
    assert stored == ("1969-12-31T23:30:00.000000Z",)


def test_an_integral_float_is_a_valid_integer(api):
    url, _ = api  # JSON Schema's integer (the OpenAPI document's type) includes 4.0
    assert len(recommend(url, user_id="u", num_recommendations=4.0)["recommendations"]) == 4


def test_the_openapi_document_declares_what_the_api_enforces(api):
    url, _ = api
    doc = httpx.get(url + "/openapi.json").json()
    event = doc["components"]["schemas"]["FeedbackEvent"]
    assert event["if"]["properties"]["feedback_type"] == {"const": "rating"} and event["then"][
        "required"
    ] == ["rating"]
    [item_id] = [p for p in doc["paths"]["/similar/{item_id}"]["get"]["parameters"] if p["name"] == "item_id"]
    assert item_id["schema"]["maxLength"] == schemas.MAX_ID_LENGTH and "pattern" in item_id["schema"]
    [timestamp] = [s for s in event["properties"]["timestamp"]["anyOf"] if s.get("type") == "string"]
    assert timestamp["format"] == "date-time" and timestamp["pattern"] == schemas.TIMESTAMP_YEARS


@pytest.mark.parametrize("item_id", ["a%01b", "x" * 257])
def test_similar_checks_the_item_id_like_every_id(api, item_id):
    url, _ = api  # was a 404 echoing the id back
    response = httpx.get(f"{url}/similar/{item_id}")
    assert response.status_code == 422 and response.json()["error"].startswith("path.item_id:")


@pytest.mark.parametrize(
    "key, quoted", [("a.b", '"a.b"'), ("", '""'), ("x: y; z", '"x: y; z"'), ("body", '"body"')]
)
def test_an_unknown_key_is_named_unambiguously(api, key, quoted):
    url, _ = api
    response = post(url, "/recommend", {"user_id": "u", key: 1})
    assert (
        response.status_code == 422
        and response.json()["error"] == f"{quoted}: Extra inputs are not permitted"
    )


# Idempotency keys: a client's retry after a lost 202 is not stored twice.


def feedback_counter(url, kind: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(f'recsys_feedback_events_total{{feedback_type="{kind}"}}'):
            return float(line.split()[-1])
    return 0.0


def stored(db, **where):
    clause = " AND ".join(f"{k} = ?" for k in where)
    return (
        sqlite3.connect(db)
        .execute(f"SELECT event_id FROM feedback WHERE {clause}", tuple(where.values()))
        .fetchall()
    )


def test_a_retry_with_the_same_idempotency_key_gets_the_same_event_id_and_is_stored_once(api):
    url, db = api
    event = {
        "user_id": "retrying-user",
        "item_id": "i00001",
        "feedback_type": "cart_add",
        "idempotency_key": "k-1",
    }
    before = feedback_counter(url, "cart_add")
    first = post(url, "/feedback", event)
    assert first.status_code == 202 and feedback_counter(url, "cart_add") == before + 1
    again = post(url, "/feedback", event)
    assert again.status_code == 202 and again.json() == first.json()
    assert stored(db, idempotency_key="k-1") == [(first.json()["event_id"],)]
    assert feedback_counter(url, "cart_add") == before + 1  # counted (and added to the history) once
    other = post(url, "/feedback", {**event, "idempotency_key": "k-2"})
    assert other.status_code == 202 and other.json() != first.json()
    assert len(stored(db, user_id="retrying-user")) == 2


def test_a_duplicate_idempotency_key_inside_one_batch_and_across_batches(api):
    url, db = api
    events = [
        {
            "user_id": "batch-retry",
            "item_id": f"i{n:05d}",
            "feedback_type": "view",
            "idempotency_key": f"b-{n % 2}",
        }
        for n in range(4)
    ]
    response = post(url, "/feedback/batch", {"events": events})
    assert response.status_code == 202
    ids = response.json()["event_ids"]
    assert ids[0] == ids[2] and ids[1] == ids[3] and ids[0] != ids[1]
    retried = post(
        url, "/feedback/batch", {"events": events[:2] + [{**events[0], "idempotency_key": "b-new"}]}
    )
    assert retried.json()["event_ids"][:2] == ids[:2]
    new_id = retried.json()["event_ids"][2]
    assert sorted(r[0] for r in stored(db, user_id="batch-retry")) == sorted({ids[0], ids[1], new_id})


def test_concurrent_retries_sharing_a_key_store_one_event(api):
    url, db = api
    event = {
        "user_id": "racing-user",
        "item_id": "i00002",
        "feedback_type": "click",
        "idempotency_key": "race-1",
    }
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(url, "/feedback", event), range(16)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["event_id"] for a in answers}) == 1
    assert len(stored(db, idempotency_key="race-1")) == 1


@pytest.mark.parametrize("key", ["", " ", "a\nb", "k" * (schemas.MAX_ID_LENGTH + 1), 42])
def test_a_bad_idempotency_key_is_refused_like_an_id(api, key):
    url, _ = api
    response = post(
        url, "/feedback", {"user_id": "u", "item_id": "i", "feedback_type": "click", "idempotency_key": key}
    )
    assert response.status_code == 422 and response.json()["error"].startswith("idempotency_key:")


def test_feedback_on_an_item_the_catalog_does_not_know_is_refused_naming_it(api):
    url, db = api
    count = sqlite3.connect(db).execute("SELECT count(*) FROM feedback").fetchone()
    response = post(url, "/feedback", {"user_id": "u", "item_id": "no-such-item", "feedback_type": "click"})
    assert response.status_code == 422
    assert response.json() == {"error": "item_id: unknown item 'no-such-item' (not in the catalog)"}
    known = {"user_id": "u", "item_id": "i00001", "feedback_type": "click"}
    response = post(url, "/feedback/batch", {"events": [known, {**known, "item_id": "gone"}]})
    assert response.status_code == 422
    assert response.json() == {"error": "events.1.item_id: unknown item 'gone' (not in the catalog)"}
    assert (
        sqlite3.connect(db).execute("SELECT count(*) FROM feedback").fetchone() == count
    )  # none of the batch


def test_the_openapi_document_says_what_a_score_is(api):
    url, _ = api
    score = httpx.get(url + "/openapi.json").json()["components"]["schemas"]["Recommendation"]["properties"][
        "score"
    ]
    assert "cosine" in score["description"] and "popularity" in score["description"]
