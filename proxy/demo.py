"""The end of `make demo`: starts `recsys serve` on the model just pushed and talks to it as an app would.

Usage: python -m proxy.demo --model-base W/serving/NAME --data DIR --feedback-db PATH [--port 8080]
Keeps the API running afterwards when attached to a terminal (Ctrl-C stops it); the last line printed is
the address of its web page.
"""

import argparse
import os
import signal
import subprocess
import sys

from proxy.api_client import ApiClient


def show(title: str, answer: dict):
    flag = f", fallback: {answer['fallback']}" if answer.get("fallback") else ""
    print(f"\n{title}  (model {answer['model_version']}{flag})")
    for rank, r in enumerate(answer["recommendations"], 1):
        print(
            f"  {rank}. {r['item_id']:>8}  {r['score']:.3f}  {r.get('title', '')} [{r.get('category', '')}]"
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-base", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--feedback-db", required=True)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "recsys"),
            "serve",
            "--model-base",
            args.model_base,
            "--data",
            args.data,
            "--feedback-db",
            args.feedback_db,
            "--port",
            str(args.port),
        ]
    )
    try:
        with ApiClient(url) as api:
            print(f"API at {url}: {api.wait_ready(120)}")
            user = "u00001"
            before = api.recommend(user, k=5)
            show(f"POST /recommend {user}", before)
            clicked = before["recommendations"][1]["item_id"]
            print(f"\nPOST /feedback {user} clicks {clicked}: {api.feedback(user, clicked, 'click')}")
            show(
                f"POST /recommend {user} again: the click is history now, and seen", api.recommend(user, k=5)
            )
            show("POST /recommend a user nobody knows", api.recommend("first-visit", k=3))
            similar = api.similar(clicked, k=3)
            print(
                f"\nGET /similar/{clicked}: "
                + ", ".join(f"{s['item_id']} {s.get('title', '')}" for s in similar["similar"])
            )
        keep_running = sys.stdin.isatty()
        print(
            f"\nThe API keeps running (OpenAPI docs at {url}/docs); Ctrl-C stops it. Its web page:"
            if keep_running
            else "\nNot a terminal: the API stops now (in a terminal it keeps running). Its web page:"
        )
        print(f"{url}/")
        if keep_running:
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
