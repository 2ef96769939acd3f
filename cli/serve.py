"""`recsys serve`: the recommendation API on a port. Its options are proxy/settings.py's fields, whose
defaults and environment variables are stated there once; an option given here overrides the environment."""

import argparse
import os
import socket

import pydantic

from cli.args import UsageError, share, tcp_port
from proxy.settings import Settings

# The settings `recsys serve` takes as options (the others, such as the API key, only from the environment).
OPTIONS = {
    "model_base": {},
    "data": {},
    "backend": {},
    "model_name": {},
    "canary_share": {"type": share},
    "feedback_db": {},
    "impression_sample": {"type": share},
    "drift_l_infinity": {"type": float},
    "drift_jensen_shannon": {"type": float},
    "bigquery_table": {},
    "store": {"metavar": "URL"},
    "reclaim_idle": {"type": float},
    "host": {},
    "port": {"type": tcp_port},
    "timeout": {"type": float},
    "reload_interval": {"type": float},
    "cors_origins": {"flag": "--cors-origin", "action": "append", "metavar": "ORIGIN"},
}


FEEDBACK_DB_HELP = "the API's --feedback-db (its default; env RECSYS_FEEDBACK_DB)"


def feedback_db_path(given: str | None) -> str:
    """The API's feedback database: the one given, else the API's setting. It must exist."""
    db = given or api_settings().feedback_db
    if not os.path.exists(db):
        raise FileNotFoundError(f"{db}: no feedback database")
    return db


def open_feedback_store(given: str | None):
    """The FeedbackStore of feedback_db_path(given); a file that is no feedback database is a usage error."""
    import sqlite3

    from proxy.feedback_store import FeedbackStore

    db = feedback_db_path(given)
    try:
        return FeedbackStore(db)
    except sqlite3.DatabaseError as e:
        raise UsageError(f"{db}: not a feedback database ({e})") from None


def _flag(name: str) -> str:
    return OPTIONS[name].get("flag", "--" + name.replace("_", "-"))


def api_settings(**given) -> Settings:
    """The API's settings: those given, else the environment's, else the defaults."""
    try:
        return Settings(**given)
    except pydantic.ValidationError as e:
        error = e.errors()[0]
        name = str(error["loc"][0])
        flag = (
            f"{_flag(name)} (env {Settings.env_name(name)})" if name in OPTIONS else Settings.env_name(name)
        )
        raise UsageError(f"{flag}: {error['msg']}") from None


def settings(args: argparse.Namespace) -> Settings:
    """The API's settings of `recsys serve`: its options given, else the environment, else the defaults."""
    result = api_settings(
        **{name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    )
    if result.model_base is None:
        raise UsageError(f"--model-base (or env {Settings.env_name('model_base')}) is required")
    return result


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        listener.bind(address)
        listener.listen(2048)
        return listener
    except OSError as e:
        raise UsageError(f"--host {host} --port {port}: cannot listen ({e.strerror or e})") from None


def _serve(args):
    config = settings(args)
    if config.store and config.data:
        from proxy.online_store import DATA_WITH_STORE

        raise UsageError(DATA_WITH_STORE)
    model_base = config.model_base
    if "://" not in model_base and not os.path.isdir(model_base) and not args.wait_for_model:
        raise UsageError(f"--model-base {model_base}: no such directory (--wait-for-model waits for a push)")
    seed_events = None
    if config.data:  # imported only then: the API image has no DuckDB
        from tfx_pipeline.data import local_source

        seed_events = local_source.recent_user_events(config.data)
    listener = _listen(config.host, config.port)  # a port in use is reported now, not after the model loaded
    from proxy import server

    server.serve(listener, config, wait_for_model=args.wait_for_model, seed_events=seed_events)


def add_commands(groups):
    p = groups.add_parser("serve", help="run the recommendation API")
    for name, option in OPTIONS.items():
        field = Settings.model_fields[name]
        default = f"default {field.default}; " if field.default not in (None, ()) else ""
        p.add_argument(
            _flag(name),
            dest=name,
            help=f"{field.description} ({default}env {Settings.env_name(name)})",
            **{k: v for k, v in option.items() if k != "flag"},
        )
    p.add_argument(
        "--wait-for-model",
        action="store_true",
        help="start without a pushed model and answer 503 until one appears (default: exit 2)",
    )
    p.set_defaults(func=_serve)
