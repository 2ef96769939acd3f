"""The web page (proxy/static/, proxy/routes/web.py) in a real headless Chromium against the real API over the
pipeline's model, and its JSON endpoints over plain HTTP. The API runs with a key, as it would for browsers,
so every page test also goes through the page asking for it."""

import csv
import json
import os
import re
import shutil
import sqlite3

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

import contract
from proxy.routes import web
from serving.history import SEEN_LIMIT
from tests.api_server import post, running_api

CHROMIUM = "/usr/bin/chromium"  # Debian's (`make browser`): playwright downloads no browser here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "test-artifacts"
)
KEY = "page-test-key"
# The pipeline's evaluation.json, for a pushed version that has none.
EVALUATION = {
    "k": 10,
    "blessed": True,
    "reason": "beats most popular by 0.110 recall@10",
    "margin": 0.01,
    "metrics": {
        system: {"precision@10": p, "recall@10": r, "ndcg@10": n, "hit@10": h, "coverage": c, "users": 300}
        for system, (p, r, n, h, c) in {
            "model": (0.05, 0.2125, 0.1432, 0.4, 0.61),
            "most_popular": (0.02, 0.1011, 0.0623, 0.2, 0.025),
            "ease": (0.06, 0.2501, 0.1712, 0.5, 0.3),
        }.items()
    },
}


@pytest.fixture(scope="module")
def versions(pipeline_run, tmp_path_factory):
    """A model base with a copy of the pushed version (given an evaluation.json if the pipeline wrote none)
    and an older copy without one: (model_base, newest version, older version)."""
    pushed = pipeline_run["pushed"]
    base = tmp_path_factory.mktemp("web") / "serving"
    newest, older = os.path.basename(pushed), str(int(os.path.basename(pushed)) - 3600)
    for version in (newest, older):
        shutil.copytree(pushed, base / version)
    evaluation = base / newest / "assets.extra" / contract.EVALUATION_FILE
    if not evaluation.exists():
        evaluation.write_text(json.dumps(EVALUATION))
    (base / older / "assets.extra" / contract.EVALUATION_FILE).unlink(missing_ok=True)
    return str(base), newest, older


@pytest.fixture(scope="module")
def api(versions, pipeline_run, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("web-feedback") / "feedback.sqlite")
    with running_api(
        model_base=versions[0], feedback_db=db, data_dir=pipeline_run["data_dir"], api_key=KEY
    ) as (url, _):
        yield url, db


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, api):
    """A fresh browser context on the page. It must ask for the API key exactly once and raise no script
    error."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    prompts, errors = [], []
    page.on("dialog", lambda dialog: (prompts.append(dialog.message), dialog.accept(KEY)))
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(api[0] + "/")
    yield page
    context.close()
    assert len(prompts) == 1 and "X-API-Key" in prompts[0], prompts
    assert not errors, errors


def snap(page, name: str):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, f"web-{name}.png"), full_page=True)


def get(url: str, path: str, **params) -> httpx.Response:
    return httpx.get(url + path, params=params, headers={"X-API-Key": KEY}, timeout=30)


def feedback(url: str, **event) -> httpx.Response:
    return post(url, "/feedback", event, headers={"X-API-Key": KEY})


def stored(db: str, sql: str, *args):
    with sqlite3.connect(db) as con:
        return con.execute(sql, args).fetchall()


def history_in_data(data_dir: str, user: str) -> list[str]:
    """What the API's history of `user` starts as: the positive items of their last SEEN_LIMIT events, newest
    first."""
    with open(os.path.join(data_dir, "interactions.csv"), newline="") as fh:
        events = sorted(
            (r["timestamp"], r["item_id"], r["interaction_type"])
            for r in csv.DictReader(fh)
            if r["user_id"] == user
        )
    return [item for _, item, kind in events[-SEEN_LIMIT:] if kind != "dislike"][::-1][:20]


# ---- the JSON endpoints ----


def test_page_files_are_open_and_the_api_needs_the_key(api):
    url, _ = api
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/app.js"' in page.text
    for path in ("/static/app.js", "/static/style.css"):
        assert httpx.get(url + path).status_code == 200
    refused = httpx.get(url + "/users")
    assert refused.status_code == 401 and "X-API-Key" in refused.json()["error"]
    paths = get(url, "/openapi.json").json()["paths"]
    assert {"/users", "/users/{user_id}/history", "/model", "/model/versions", "/feedback/stats"} <= set(
        paths
    )
    assert "/" not in paths


def test_example_users_are_known_users_with_a_history(api, pipeline_run):
    url, _ = api
    users = get(url, "/users").json()["users"]
    assert len(users) == 12 and users == sorted(users)
    assert all(history_in_data(pipeline_run["data_dir"], u) for u in users[:3])
    assert len(get(url, "/users", limit=3).json()["users"]) == 3
    for limit in (0, 101, "x"):
        response = get(url, "/users", limit=limit)
        assert response.status_code == 422 and "limit" in response.json()["error"]


def test_user_history_is_what_recommend_uses_and_follows_feedback(api, pipeline_run):
    url, _ = api
    user = get(url, "/users").json()["users"][1]
    answer = get(url, f"/users/{user}/history").json()
    assert answer["user_id"] == user and answer["known"] is True
    assert [i["item_id"] for i in answer["history"]] == history_in_data(pipeline_run["data_dir"], user)
    assert all(i["title"] and i["category"] for i in answer["history"]) and answer["seen"] > 0
    [item, *_] = post(url, "/recommend", {"user_id": user}, headers={"X-API-Key": KEY}).json()[
        "recommendations"
    ]
    assert feedback(url, user_id=user, item_id=item["item_id"], feedback_type="click").status_code == 202
    assert (
        get(url, f"/users/{user}/history").json()["history"][0]["item_id"] == item["item_id"]
    )  # newest first
    assert get(url, "/users/never-seen/history").json() == {
        "user_id": "never-seen",
        "known": False,
        "history": [],
        "seen": 0,
    }
    for bad in ("x" * 300, "a%01b", "%20"):
        response = get(url, f"/users/{bad}/history")
        assert response.status_code == 422 and "user_id" in response.json()["error"], bad


def strings(value) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def test_model_reports_of_the_serving_and_every_pushed_version(api, versions):
    url, _ = api
    base, newest, older = versions

    def report(version, name):
        """The file as the API shows it: without the pipeline's artifact locations."""
        path = os.path.join(base, version, "assets.extra", name)
        if not os.path.exists(path):
            return None
        content = json.load(open(path))
        content.pop("baseline_model", None)
        for other_model in ("averaged_with", "warm_started_from"):
            if content.get(other_model):
                content[other_model].pop("model_dir")
        return content

    model = get(url, "/model").json()
    assert not [s for s in strings(model) if s.startswith("/") or "://" in s], model  # no internal paths
    assert model == {
        "version": newest,
        "serving": True,
        "export_report": report(newest, "export_report.json"),
        "evaluation": report(newest, contract.EVALUATION_FILE),
    }
    assert (
        model["export_report"]["scann_recall_at_10_vs_exact"] >= 0.9
        and model["evaluation"]["metrics"]["model"]
    )
    listed = get(url, "/model/versions").json()["versions"]
    assert [v["version"] for v in listed] == [newest, older]
    assert listed[0] == model
    assert listed[1] == {
        "version": older,
        "serving": False,
        "export_report": report(older, "export_report.json"),
        "evaluation": None,
    }
    assert [v["version"] for v in get(url, "/model/versions", limit=1).json()["versions"]] == [newest]
    response = get(url, "/model/versions", limit=0)
    assert response.status_code == 422 and "limit" in response.json()["error"]


def test_version_reports_are_read_once(tmp_path):
    extra = tmp_path / "7" / "assets.extra"
    extra.mkdir(parents=True)
    (extra / "export_report.json").write_text('{"train_seconds": 1.5}')
    reports = web.VersionReports(str(tmp_path))
    assert reports.get("7") == ({"train_seconds": 1.5}, None)
    (extra / contract.EVALUATION_FILE).write_text(json.dumps(EVALUATION))
    assert reports.get("7") == ({"train_seconds": 1.5}, None)  # a pushed version never changes


def test_feedback_stats_count_events_per_type_and_period(api):
    url, db = api
    for kind in ("cart_add", "cart_add", "purchase"):
        assert feedback(url, user_id="stats-user", item_id="i00001", feedback_type=kind).status_code == 202
    for moment in (
        "2020-01-01T00:00:00Z",
        "2100-01-01T00:00:00Z",
    ):  # outside every window, still in the totals
        assert (
            feedback(
                url, user_id="stats-user", item_id="i00001", feedback_type="view", timestamp=moment
            ).status_code
            == 202
        )
    totals = dict(stored(db, "SELECT interaction_type, count(*) FROM feedback GROUP BY 1"))
    for bucket, buckets in (("minute", 5), ("hour", 2), ("day", 1)):
        stats = get(url, "/feedback/stats", bucket=bucket, buckets=buckets).json()
        assert stats["bucket"] == bucket and len(stats["starts"]) == buckets and stats["totals"] == totals
        assert all(len(counts) == buckets for counts in stats["counts"].values())
        assert (
            sum(stats["counts"]["cart_add"]) == totals["cart_add"] and sum(stats["counts"]["purchase"]) == 1
        )
        assert "view" not in stats["counts"]
    for params, names in (
        ({"bucket": "week"}, "bucket"),
        ({"buckets": 0}, "buckets"),
        ({"buckets": 1001}, "buckets"),
    ):
        response = get(url, "/feedback/stats", **params)
        assert response.status_code == 422 and names in response.json()["error"], params


# ---- the page in Chromium ----


def test_like_a_recommendation_the_list_changes_and_the_feedback_page_shows_it(page, api, versions):
    url, db = api
    page.locator("#examples a").first.click()  # pick one of the offered users
    recommendations = page.locator("#recommendations li")
    expect(recommendations).to_have_count(10)
    expect(page.locator("#history li a")).not_to_have_count(0)
    user = page.locator("input[name=user]").input_value()
    expect(page.locator("#model-version")).to_contain_text(versions[1])
    before = recommendations.evaluate_all("items => items.map(item => item.dataset.itemId)")
    liked = recommendations.first.locator("a").inner_text()
    recommendations.first.get_by_role("button", name="like", exact=True).click()

    expect(page.locator(f'#recommendations li[data-item-id="{before[0]}"]')).to_have_count(
        0
    )  # seen: left out
    expect(recommendations).to_have_count(10)
    after = recommendations.evaluate_all("items => items.map(item => item.dataset.itemId)")
    assert before[0] not in after and set(after) - set(before)
    expect(page.locator("#recommendations li.new")).to_have_count(len(set(after) - set(before)))  # marked
    expect(page.locator("#history li a").first).to_have_text(liked)  # the like is the newest history
    rows = stored(
        db,
        "SELECT interaction_type, request_id FROM feedback WHERE user_id = ? AND item_id = ?",
        user,
        before[0],
    )
    assert len(rows) == 1 and rows[0][0] == "like" and len(rows[0][1]) == 32
    snap(page, "user")

    page.get_by_role("link", name="Feedback", exact=True).click()
    likes = stored(db, "SELECT count(*) FROM feedback WHERE interaction_type = 'like'")[0][0]
    expect(page.locator("#feedback-legend")).to_contain_text(f"like {likes}")
    expect(page.locator("#feedback-chart rect")).not_to_have_count(0)
    snap(page, "feedback")
    page.get_by_role("combobox").select_option("day")
    expect(page.locator("#feedback-legend")).to_contain_text(f"like {likes}")


def test_item_page_shows_similar_items(page, api):
    page.locator("#examples a").first.click()
    first = page.locator("#recommendations li a").first
    title = first.inner_text()
    first.click()
    expect(page.locator("#similar li")).to_have_count(10)
    expect(page.locator("h2").first).to_contain_text(title)
    assert page.evaluate("location.hash").startswith("#/item/")
    snap(page, "item")
    page.goto(api[0] + "/#/item/no-such-item")
    expect(page.locator(".error")).to_contain_text("unknown item")


def test_model_page_charts_the_evaluation_and_lists_the_versions(page, api, versions):
    base, newest, older = versions
    evaluation = json.load(open(os.path.join(base, newest, "assets.extra", contract.EVALUATION_FILE)))
    report = json.load(open(os.path.join(base, newest, "assets.extra", "export_report.json")))
    page.get_by_role("link", name="Model", exact=True).click()
    expect(page.locator("#version")).to_contain_text(newest)
    expect(page.locator("#blessing")).to_contain_text(evaluation["reason"])
    for system, metrics in evaluation["metrics"].items():
        for metric in ("recall@10", "ndcg@10", "coverage"):
            shown = page.locator(f'#evaluation-chart text[data-series="{system}"][data-label="{metric}"]')
            assert float(shown.text_content()) == pytest.approx(metrics[metric], abs=5e-4 + 1e-9), (
                system,
                metric,
            )
    expect(page.locator("#scann-recall")).to_contain_text(f"{report['scann_recall_at_10_vs_exact']:.3f}")
    expect(page.get_by_text(f"{report['train_seconds']:.1f} s")).to_be_visible()
    row = lambda label: page.locator("tr", has_text=re.compile(f"^{label}"))  # noqa: E731
    expect(row("trained on")).to_contain_text("train + eval")  # the refit is pushed
    expect(row("scores")).to_contain_text("the mean of this model's and one trained on train")
    expect(page.locator("#evaluation-legend")).to_contain_text("this model (saw the eval events)")
    rows = page.locator("#versions tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(1)).to_contain_text(newest)
    snap(page, "model")
    page.get_by_role("link", name=older, exact=True).click()
    expect(page.locator("#version")).to_contain_text(older)
    expect(page.locator("#no-evaluation")).to_have_text("no evaluation stored for this version")


def test_model_page_shows_the_click_through_per_version_that_the_store_counts(page, api):
    url, db = api
    for n, user in enumerate(get(url, "/users").json()["users"][:7]):
        answer = post(url, "/recommend", {"user_id": user}, headers={"X-API-Key": KEY}).json()
        if n % 3 == 0:  # a click on the n-th item of the list it answered
            item = answer["recommendations"][n]["item_id"]
            event = dict(user_id=user, item_id=item, feedback_type="click", request_id=answer["request_id"])
            assert feedback(url, **event).status_code == 202
    assert get(url, "/monitor/online").status_code == 200  # (its reads wait for the impressions under way)
    # the store's counts, by their own SQL: answers recorded, and those with a click on an item they showed
    requests = dict(
        stored(db, "SELECT model_version, count(DISTINCT request_id) FROM impressions GROUP BY 1")
    )
    clicked = dict(
        stored(
            db,
            "SELECT i.model_version, count(DISTINCT i.request_id) FROM impressions i JOIN feedback f "
            "ON f.request_id = i.request_id AND f.item_id = i.item_id "
            "WHERE f.interaction_type IN ('click', 'like', 'cart_add', 'purchase') GROUP BY 1",
        )
    )
    assert requests and sum(clicked.values()) >= 3
    page.get_by_role("link", name="Model", exact=True).click()
    expect(page.locator("#online tr")).to_have_count(1 + len(requests))
    for version, count in requests.items():
        row = page.locator(f'#online tr[data-version="{version}"]')
        expect(row.locator("td").nth(2)).to_have_text(str(count))
        expect(row.locator("td").nth(3)).to_have_text(str(clicked.get(version, 0)))
        expect(row.locator("td.ctr")).to_have_text(f"{100 * clicked.get(version, 0) / count:.1f} %")
    expect(page.locator("#ab")).to_contain_text(
        "not enough data: no answers from the variants stable and canary"
    )
    snap(page, "model-online")


def test_model_page_shows_the_skew_of_the_feedback_from_the_training_data(page, api):
    url, _ = api
    user = get(url, "/users").json()["users"][0]
    item = post(url, "/recommend", {"user_id": user}, headers={"X-API-Key": KEY}).json()["recommendations"][
        -1
    ]
    events = [
        dict(user_id=user, item_id=item["item_id"], feedback_type="view")
    ] * 150  # users see one item only
    assert post(url, "/feedback/batch", {"events": events}, headers={"X-API-Key": KEY}).status_code == 202
    skew = get(url, "/monitor/skew").json()
    [measured] = [
        d
        for s in skew["sources"]
        if s["source"] == "feedback"
        for d in s["distances"]
        if (d["feature"], d["comparator"]) == ("item_id", "l_infinity")
    ]
    assert measured["drift"] and measured["distance"] > 0.9
    page.get_by_role("link", name="Model", exact=True).click()
    row = page.locator(
        '#skew tr[data-source="feedback"][data-feature="item_id"][data-comparator="l_infinity"]'
    )
    expect(row).to_have_class("skew")
    expect(row.locator("td.distance")).to_have_text(f"{measured['distance']:.4f}")
    expect(page.locator("#skew-summary")).to_contain_text("feedback: skew")
    snap(page, "model-skew")
