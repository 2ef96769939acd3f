"""Each router of the API on the tiny model (tests/tiny_model.py): the fast tier's check that the endpoints,
their dependencies and the settings are wired. tests/test_api.py checks the answers on a trained model."""

import httpx
import pytest

from proxy.settings import Settings
from tests import tiny_model
from tests.api_server import post, running_api

pytestmark = pytest.mark.fast
KEY = "routes-test-key"


@pytest.fixture(scope="module")
def api(tiny_model_base, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("routes") / "feedback.sqlite")
    with running_api(model_base=tiny_model_base, feedback_db=db, api_key=KEY) as (url, _):
        yield url


def keyed(url: str, path: str, body=None) -> httpx.Response:
    return post(url, path, body, headers={"X-API-Key": KEY})


def test_recommend_answers_known_users_from_the_model_and_others_from_popularity(api):
    known = keyed(api, "/recommend", {"user_id": "u0", "num_recommendations": 3}).json()
    assert known["model_version"] == "1" and "fallback" not in known and len(known["recommendations"]) == 3
    stranger = keyed(api, "/recommend", {"user_id": "nobody", "num_recommendations": 2}).json()
    assert stranger["fallback"] == "popularity"
    assert [r["item_id"] for r in stranger["recommendations"]] == tiny_model.ITEMS[:2]  # most events first


def test_feedback_becomes_history_and_is_left_out_next_time(api):
    first = keyed(api, "/recommend", {"user_id": "u1", "num_recommendations": 1}).json()
    [top] = [r["item_id"] for r in first["recommendations"]]
    assert (
        keyed(api, "/feedback", {"user_id": "u1", "item_id": top, "feedback_type": "click"}).status_code
        == 202
    )
    again = keyed(api, "/recommend", {"user_id": "u1", "num_recommendations": 5}).json()
    assert top not in [r["item_id"] for r in again["recommendations"]]
    history = httpx.get(api + "/users/u1/history", headers={"X-API-Key": KEY}).json()
    assert [h["item_id"] for h in history["history"]] == [top]


def test_batch_similar_and_model_routes_answer(api):
    batch = keyed(api, "/recommend/batch", {"requests": [{"user_id": "u0"}, {"user_id": "u2"}]}).json()
    assert [r["user_id"] for r in batch["results"]] == ["u0", "u2"]
    similar = httpx.get(api + "/similar/i00?k=4", headers={"X-API-Key": KEY}).json()
    assert len(similar["similar"]) == 4 and "i00" not in [s["item_id"] for s in similar["similar"]]
    model = httpx.get(api + "/model", headers={"X-API-Key": KEY}).json()
    assert model["version"] == "1" and model["serving"] and model["evaluation"] is None


def test_the_key_guards_every_route_but_the_probes_and_the_page(api):
    assert post(api, "/recommend", {"user_id": "u0"}).status_code == 401
    assert httpx.get(api + "/metrics").status_code == 401
    assert httpx.get(api + "/healthz").status_code == 200
    assert httpx.get(api + "/readyz").json() == {"status": "ready", "model_version": "1"}
    assert httpx.get(api + "/").status_code == 200


def test_errors_name_the_field(api):
    wrong = keyed(api, "/feedback", {"user_id": "u0", "item_id": "i00", "feedback_type": "wishlist"})
    assert wrong.status_code == 422 and wrong.json()["error"].startswith("feedback_type:")
    unknown = httpx.get(api + "/similar/nope", headers={"X-API-Key": KEY})
    assert unknown.status_code == 404 and unknown.json() == {"error": "item_id: unknown item 'nope'"}


def test_settings_read_the_environment_and_options_override_it(monkeypatch):
    monkeypatch.setenv("RECSYS_TIMEOUT", "0.5")
    monkeypatch.setenv("RECSYS_CORS_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("RECSYS_FEEDBACK_TABLE", "p.d.t")
    settings = Settings(reload_interval=1.0)
    assert (settings.timeout, settings.reload_interval, settings.port) == (0.5, 1.0, 9000)
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert (
        settings.bigquery_table == "p.d.t" and Settings.env_name("bigquery_table") == "RECSYS_FEEDBACK_TABLE"
    )
    assert Settings(timeout=3.0).timeout == 3.0
