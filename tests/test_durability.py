"""Feedback survives the API being killed (SIGKILL) while events stream in."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import httpx

from proxy.api_client import ApiClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_api(model_base: str, db: str, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "recsys"),
            "serve",
            "--model-base",
            model_base,
            "--feedback-db",
            db,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with ApiClient(f"http://127.0.0.1:{port}") as api:
        api.wait_ready(180)
    return server


def test_every_accepted_event_survives_sigkill_exactly_once(pipeline_run, tmp_path):
    model_base, db, port = os.path.dirname(pipeline_run["pushed"]), str(tmp_path / "fb.sqlite"), free_port()
    server = start_api(model_base, db, port)
    accepted, stop = [], threading.Event()

    def stream():
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                try:
                    response = client.post(
                        "/feedback",
                        json={
                            "user_id": "killed-user",
                            "item_id": f"i{n % 200:05d}",
                            "feedback_type": "click",
                        },
                    )
                except httpx.TransportError:
                    return  # the server is gone
                if response.status_code == 202:
                    accepted.append(response.json()["event_id"])

    writers = [threading.Thread(target=stream) for _ in range(4)]
    for w in writers:
        w.start()
    deadline = time.monotonic() + 60
    while len(accepted) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.send_signal(signal.SIGKILL)  # no shutdown hook runs
    server.wait(timeout=30)
    stop.set()
    for w in writers:
        w.join(timeout=30)
    assert len(accepted) >= 200

    server = start_api(model_base, db, port)
    try:
        rows = sqlite3.connect(db).execute("SELECT event_id FROM feedback").fetchall()
        stored = [r[0] for r in rows]
        assert set(accepted) <= set(stored)  # every 202 is in the store
        assert len(stored) == len(set(stored))  # none twice
        assert len(stored) - len(accepted) <= 4  # at most the in-flight ones committed but unanswered
        # The restarted API rebuilt the user's history from the store: no popularity fallback.
        answer = httpx.post(f"http://127.0.0.1:{port}/recommend", json={"user_id": "killed-user"}).json()
        assert "fallback" not in answer
    finally:
        server.terminate()
        server.wait(timeout=30)
