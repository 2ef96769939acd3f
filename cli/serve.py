"""`recsys serve`: the recommendation API on a port."""

import os
import socket

from cli.args import UsageError, env, share, tcp_port


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
    if args.store and args.data:
        from proxy.online_store import DATA_WITH_STORE

        raise UsageError(DATA_WITH_STORE)
    if "://" not in args.model_base and not os.path.isdir(args.model_base) and not args.wait_for_model:
        raise UsageError(
            f"--model-base {args.model_base}: no such directory (--wait-for-model waits for a push)"
        )
    seed_events = None
    if args.data:  # imported only then: the API image has no DuckDB
        from tfx_pipeline.data import local_source

        seed_events = local_source.recent_user_events(args.data)
    listener = _listen(args.host, args.port)  # a port in use is reported now, not after the model loaded
    from proxy import server

    server.serve(
        listener,
        wait_for_model=args.wait_for_model,
        model_base=args.model_base,
        feedback_db=args.feedback_db,
        seed_events=seed_events,
        backend=args.backend,
        model_name=args.model_name,
        timeout=args.timeout,
        reload_interval=args.reload_interval,
        bigquery_table=args.bigquery_table,
        api_key=env("RECSYS_API_KEY"),
        store=args.store,
        reclaim_idle=args.reclaim_idle,
        canary_share=args.canary_share,
        cors_origins=tuple(args.cors_origin),
        impression_sample=args.impression_sample,
    )


def add_commands(groups):
    p = groups.add_parser("serve", help="run the recommendation API")
    p.add_argument(
        "--model-base",
        default=env("RECSYS_MODEL_BASE"),
        required=env("RECSYS_MODEL_BASE") is None,
        help="WORKDIR/serving/<model-name> (or gs://...); env RECSYS_MODEL_BASE",
    )
    p.add_argument("--data", default=env("RECSYS_DATA"), help="data directory to seed user histories from")
    p.add_argument(
        "--backend",
        default=env("RECSYS_BACKEND"),
        help="TF Serving: grpc://host:8500 (balanced over every address host resolves to), "
        "dns://dns-server/host:8500, or http://host:8501; default: the model in-process",
    )
    p.add_argument("--model-name", default=env("RECSYS_MODEL_NAME"), help="TF Serving's model name")
    p.add_argument(
        "--canary-share",
        type=share,
        default=env("RECSYS_CANARY_SHARE", "0"),
        help="TF Serving: the share of users (0..1, by a hash of their id) whose requests ask for the "
        '"canary" version label, the others "stable"; env RECSYS_CANARY_SHARE',
    )
    p.add_argument(
        "--feedback-db",
        default=env("RECSYS_FEEDBACK_DB", "feedback.sqlite"),
        help="SQLite file the feedback (and the impressions) are stored in; env RECSYS_FEEDBACK_DB",
    )
    p.add_argument(
        "--impression-sample",
        type=share,
        default=env("RECSYS_IMPRESSION_SAMPLE", "1"),
        help="the share of /recommend answers (0..1, by a hash of the request id) recorded as impressions "
        "for the online metrics; env RECSYS_IMPRESSION_SAMPLE",
    )
    p.add_argument(
        "--bigquery-table",
        default=env("RECSYS_FEEDBACK_TABLE"),
        help="project.dataset.table to stream feedback to as well (Cloud); env RECSYS_FEEDBACK_TABLE",
    )
    p.add_argument(
        "--store",
        default=env("RECSYS_STORE"),
        metavar="URL",
        help="redis://[:password@]host:port/db (rediss:// for TLS): histories and feedback on a store "
        "every instance shares, feedback delivered to --bigquery-table or else --feedback-db; "
        "default: in this process; env RECSYS_STORE",
    )
    p.add_argument(
        "--reclaim-idle",
        type=float,
        default=30.0,
        help="seconds before another instance delivers events an instance read but did not finish",
    )
    p.add_argument(
        "--host", default=env("RECSYS_HOST", "127.0.0.1"), help="address to listen on; env RECSYS_HOST"
    )
    p.add_argument("--port", type=tcp_port, default=env("PORT", "8080"), help="port to listen on; env PORT")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds allowed for each model call")
    p.add_argument(
        "--reload-interval", type=float, default=5.0, help="seconds between looks for a new version"
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        default=[o for o in env("RECSYS_CORS_ORIGINS", "").split(",") if o],
        help="a browser origin (https://app.example.com) whose pages may call the API (repeatable; "
        "default: none); env RECSYS_CORS_ORIGINS, comma-separated",
    )
    p.add_argument(
        "--wait-for-model",
        action="store_true",
        help="start without a pushed model and answer 503 until one appears (default: exit 2)",
    )
    p.set_defaults(func=_serve)
