"""Runs the API for real (uvicorn on 127.0.0.1, an OS-chosen port) in a thread, for the tests."""

import contextlib
import socket
import threading
import time

import httpx
import uvicorn

from proxy.server import build_app
from proxy.settings import Settings
from tfx_pipeline.data import local_source


@contextlib.contextmanager
def running_api(data_dir: str | None = None, **build_args):
    """Yields (base_url, app); stops the server on exit. data_dir: seed the histories from it, as `recsys
    serve --data` does."""
    seed_events = local_source.recent_user_events(data_dir) if data_dir else None
    app = build_app(Settings(**build_args), seed_events)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    try:
        yield url, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def post(url: str, path: str, body=None, **kwargs) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30, **kwargs)
