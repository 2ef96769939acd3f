"""`recsys serve` as a user starts it: fails fast on a wrong model base or port, logs where it listens and one
line per request with its id, serves its API documentation offline, declares its key, allows configured
CORS."""

import os
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.test_web_page import CHROMIUM, CHROMIUM_ARGS

RECSYS = os.path.join(os.path.dirname(sys.executable), "recsys")
KEY = "serve-test-key"
ORIGIN = "https://app.example.com"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(*argv, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([RECSYS, "serve", *argv], capture_output=True, text=True, timeout=timeout)


def test_a_missing_model_base_fails_fast(tmp_path):
    started = time.monotonic()
    run = serve("--model-base", str(tmp_path / "nowhere"), "--port", str(free_port()))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (
        f"recsys: error: --model-base {tmp_path / 'nowhere'}: no such directory "
        "(--wait-for-model waits for a push)"
    )
    assert time.monotonic() - started < 15  # before TensorFlow's imports


def test_a_model_base_without_a_version_fails(tmp_path):
    run = serve(
        "--model-base", str(tmp_path), "--port", str(free_port()), "--feedback-db", str(tmp_path / "f.db")
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"recsys: error: {tmp_path}: no pushed model version" in run.stderr


def test_a_port_out_of_range_is_refused(tmp_path):
    run = serve("--model-base", str(tmp_path), "--port", "99999")
    assert run.returncode == 2 and "argument --port: a TCP port is 0-65535, got 99999" in run.stderr


def test_a_port_in_use_is_reported_before_anything_loads(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        started = time.monotonic()
        run = serve("--model-base", str(tmp_path), "--port", str(port))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert (
        f"recsys: error: --host 127.0.0.1 --port {port}: cannot listen (Address already in use)" in run.stderr
    )
    assert time.monotonic() - started < 15


@pytest.fixture(scope="module")
def waiting_api(tmp_path_factory):
    """`recsys serve --wait-for-model` on an empty model base, with an API key and one CORS origin:
    (base url, the lines it logged so far)."""
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = dict(os.environ, RECSYS_API_KEY=KEY)
    server = subprocess.Popen(
        [
            RECSYS,
            "serve",
            "--model-base",
            str(tmp / "serving"),
            "--wait-for-model",
            "--port",
            str(port),
            "--feedback-db",
            str(tmp / "feedback.sqlite"),
            "--cors-origin",
            ORIGIN,
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = []
    threading.Thread(target=lambda: lines.extend(server.stderr), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            httpx.get(url + "/healthz", timeout=1)
            break
        except httpx.TransportError:
            assert server.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
    yield url, lines
    server.terminate()
    server.wait(timeout=30)


def logged(lines, pattern, timeout=5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in list(lines) if re.search(pattern, line)]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no log line matches {pattern!r}:\n{''.join(lines)}")


def test_it_says_where_it_listens_and_that_it_waits(waiting_api):
    url, lines = waiting_api
    logged(lines, r"no model pushed under .*serving yet: waiting for one")
    logged(lines, rf"listening on {re.escape(url)}$")
    assert httpx.get(url + "/readyz").status_code == 503
    assert not any("Traceback" in line for line in lines)


def test_request_ids_are_the_clients_or_new_and_logged(waiting_api):
    url, lines = waiting_api
    answer = httpx.get(url + "/healthz", headers={"X-Request-ID": "client-id.42"})
    assert answer.headers["X-Request-ID"] == "client-id.42"
    # one prefix (time, level, logger) and then the line itself
    logged(
        lines,
        r' INFO proxy\.access: 127\.0\.0\.1:\d+ "GET /healthz" 200 [0-9.]+ ms request_id=client-id\.42$',
    )
    generated = httpx.get(url + "/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    logged(lines, rf"request_id={generated}$")
    unsafe = httpx.get(url + "/healthz", headers={"X-Request-ID": "a b\tc"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe)  # not a token: replaced, not written into the log


def test_the_key_is_declared_in_openapi_and_required(waiting_api):
    url, lines = waiting_api
    spec = httpx.get(
        url + "/openapi.json"
    ).json()  # the docs stay open, so clients and the page can find the key
    [(scheme_name, scheme)] = spec["components"]["securitySchemes"].items()
    assert scheme == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "the key `recsys serve` was started with (env RECSYS_API_KEY)",
    }
    for path in ("/recommend", "/recommend/batch", "/feedback", "/similar/{item_id}", "/users"):
        [operation] = spec["paths"][path].values()
        assert operation["security"] == [{scheme_name: []}], path
    assert "security" not in spec["paths"]["/healthz"]["get"]
    refused = httpx.post(url + "/recommend", json={"user_id": "u1"})
    assert refused.status_code == 401 and refused.json() == {"error": "missing or wrong X-API-Key header"}
    assert httpx.get(url + "/metrics").status_code == 401
    keyed = httpx.post(url + "/recommend", json={"user_id": "u1"}, headers={"X-API-Key": KEY})
    assert keyed.status_code == 503 and keyed.json() == {
        "error": "no model loaded yet"
    }  # past the key: no model


def test_cors_allows_the_configured_origin_only(waiting_api):
    url, _ = waiting_api
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    }
    allowed = httpx.options(url + "/recommend", headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 200 and allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-api-key" in allowed.headers["Access-Control-Allow-Headers"].lower()
    other = httpx.options(url + "/recommend", headers={"Origin": "https://elsewhere.example", **preflight})
    assert other.status_code == 400 and "Access-Control-Allow-Origin" not in other.headers
    answer = httpx.get(url + "/healthz", headers={"Origin": ORIGIN})
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-request-id" in answer.headers["Access-Control-Expose-Headers"].lower()


def test_docs_render_in_chromium_without_internet(waiting_api):
    url, _ = waiting_api
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
    outside = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()

        def only_this_server(route):  # as without internet: anything not from the API fails
            if route.request.url.startswith(url):
                return route.continue_()
            outside.append(route.request.url)
            return route.abort()

        page.route("**/*", only_this_server)
        page.goto(url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30000)
        assert "recsys API" in page.inner_text(".swagger-ui .info .title")
        assert page.locator(".opblock-summary-path", has_text="/recommend").count() >= 1
        assert page.locator("button.authorize").count() == 1  # the X-API-Key scheme
        browser.close()
    assert outside == []
