"""`recsys`: the command line of the project (data, pipeline, model)."""

import argparse
import importlib.metadata
import json
import os
import socket
import sys
import urllib.parse
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS 0.7.7 needs Keras 2; set before TensorFlow loads


class UsageError(Exception):
    """A wrong argument found after parsing: exit 2 with its message, as argparse's own errors."""


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _port(text: str) -> int:
    port = _at_least(0)(text)  # 0: any free port (logged)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0-65535, got {port}")
    return port


def _http_url(text: str) -> str:
    parsed = urllib.parse.urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise argparse.ArgumentTypeError(f"expected http://host:port (or https://), got {text!r}")
    return text


def _data_sample(args):
    if args.events < 5 * args.users:
        raise UsageError(
            f"--events: at least 5 per user are drawn, so at least {5 * args.users} for "
            f"--users {args.users}; got {args.events}"
        )
    from tfx_pipeline.data import sample

    sample.generate(args.out, users=args.users, items=args.items, events=args.events, seed=args.seed)
    print(f"wrote {args.out}/interactions.csv and {args.out}/items.csv")


def _data_movielens(args):
    from tfx_pipeline.data import movielens

    n = movielens.convert(args.src, args.out)
    print(f"wrote {n} interactions to {args.out}/interactions.csv and the catalog to {args.out}/items.csv")


def _hyperparameters(args) -> dict:
    """--hparams (and --epochs where the command has it), checked against HParams before anything runs."""
    from trainer_module.hparams import HParams

    try:
        hyperparameters = json.loads(args.hparams) if args.hparams else {}
        if getattr(args, "epochs", None) is not None:
            hyperparameters["epochs"] = args.epochs
        HParams.from_overrides(hyperparameters)
    except (ValueError, TypeError) as e:
        raise UsageError(f"--hparams: {e}") from None
    return hyperparameters


def _pipeline_run(args):
    from tfx_pipeline.data import local_source

    hyperparameters = _hyperparameters(args)
    local_source.open_data_dir(args.data).close()  # the data contract, before TFX's imports take their minute
    from tfx_pipeline import drift, evaluation, local_runner

    result = local_runner.run(
        args.data,
        args.workdir,
        model_name=args.model_name,
        hyperparameters=hyperparameters,
        max_regression=args.max_regression,
        drift_thresholds={"l_infinity": args.drift_l_infinity, "jensen_shannon": args.drift_jensen_shannon},
        stop_on_drift=args.stop_on_drift,
    )
    report = result["evaluation"]
    print(drift.describe(result["drift"]))
    print(
        f"\nEvaluator (eval split):\n{evaluation.report(report['metrics'])}\n"
        f"({evaluation.REFIT}: the model pushed if blessed, trained on the eval split too: a check that it "
        f"trained, not a test)\n{'blessed' if report['blessed'] else 'NOT blessed'}: {report['reason']}"
    )
    if result["pushed"]:
        print(f"pushed: {result['pushed']}")
    elif report["blessed"]:
        print(
            "pushed: nothing new (every component was cached; the newest version under "
            f"{local_runner.serving_dir(args.workdir, args.model_name)} is current)"
        )
    else:
        print(f"pushed: nothing (the model was not blessed); it stays in {result['model']}")


def _pipeline_retrain(args):
    from tfx_pipeline import retrain

    if not os.path.exists(args.feedback_db):
        raise FileNotFoundError(f"{args.feedback_db}: no feedback database")
    thresholds = {"l_infinity": args.drift_l_infinity, "jensen_shannon": args.drift_jensen_shannon}
    decision, newest = retrain.check(args.feedback_db, args.workdir, args.min_new_events, thresholds)
    print(f"{'run' if decision.run else 'no run'}: {decision.reason}")
    if not decision.run or args.dry_run:
        return
    from proxy.feedback_store import FeedbackStore

    store = FeedbackStore(args.feedback_db)
    try:
        print(f"exported the feedback to {store.export(args.data)}")
    finally:
        store.close()
    _pipeline_run(args)
    retrain.write_state(args.workdir, newest)  # only after a run that finished: a failed one is tried again


def _pipeline_compile(args):
    from tfx_pipeline import cloud_config

    config = cloud_config.load(args.config)  # every problem of the file, before TFX's imports
    from tfx_pipeline import vertex_runner

    print(f"compiled: {vertex_runner.compile_pipeline(config, args.out)}")


def _pipeline_submit(args):
    import tempfile

    import google.auth
    import google.auth.exceptions

    from tfx_pipeline import cloud_config

    config = cloud_config.load(args.config)
    try:  # before compiling, which takes a minute
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except google.auth.exceptions.DefaultCredentialsError:
        raise UsageError(
            "no Google Cloud credentials: run `gcloud auth application-default login`, or set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
        ) from None
    from tfx_pipeline import vertex_runner

    with tempfile.TemporaryDirectory() as tmp:
        template = args.template or vertex_runner.compile_pipeline(config, os.path.join(tmp, "pipeline.json"))
        submitted = vertex_runner.submit(config, template, schedule=args.schedule, credentials=credentials)
    print(f"submitted: {submitted.resource_name}")


def _evaluate(args) -> dict:
    from proxy.embedded import EmbeddedModel
    from tfx_pipeline import evaluation

    train, test = evaluation.load_split(args.split)
    model = EmbeddedModel.newest(args.model_base) if args.model_base else EmbeddedModel(args.model_dir)
    print(f"model {model.model_version}")
    results = evaluation.compare(train, test, {"model": model})
    print(evaluation.report(results))
    with open(os.path.join(args.split, "evaluation.json"), "w") as out:
        json.dump(results, out, indent=2)
    return results


def _benchmark_quality(args):
    from tfx_pipeline import evaluation, local_runner
    from tfx_pipeline.data import movielens

    hyperparameters = _hyperparameters(args)
    data = args.dataset
    if not os.path.exists(os.path.join(data, "interactions.csv")):
        data = os.path.join(args.workdir, "data")
        movielens.convert(args.dataset, data)
    split = os.path.join(args.workdir, "split")
    evaluation.split_per_user(data, split, seed=args.seed)
    result = local_runner.run(
        os.path.join(split, "train"), os.path.join(args.workdir, "work"), hyperparameters=hyperparameters
    )
    print(f"trained: {result['model']}; timings {json.dumps(result['timings'])}")
    _evaluate(argparse.Namespace(split=split, model_base=None, model_dir=result["model"]))  # blessed or not


def _model_show(args):
    if not args.user_id and not args.data:
        raise UsageError(
            "model show: name users with --user-id, or give --data to show its first three users"
        )
    from proxy.embedded import EmbeddedModel
    from proxy.history import SEEN_LIMIT, HistoryStore
    from tfx_pipeline.data import local_source

    model = EmbeddedModel.newest(args.model_base)
    store = HistoryStore()
    if args.data:
        store.add_events(local_source.recent_events(local_source.open_data_dir(args.data), SEEN_LIMIT))
    users = args.user_id or sorted(store.users())[:3]
    print(f"model version {model.model_version} ({model.index_kind} index)")
    results = model.recommend(
        users, [store.history(u) for u in users], [store.seen(u) for u in users], args.k
    )
    for user, recs in zip(users, results):
        print(f"\nuser {user} (recent: {', '.join(store.history(user)[-5:]) or 'none'})")
        for rank, (item, score) in enumerate(recs, 1):
            meta = model.catalog.items.get(item)
            print(
                f"  {rank:2d}. {item:>8}  {score:6.3f}  {meta.title if meta else ''} [{meta.category if meta else ''}]"
            )


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
    listener = _listen(args.host, args.port)  # a port in use is reported now, not after the model loaded
    from proxy import server

    server.serve(
        listener,
        wait_for_model=args.wait_for_model,
        model_base=args.model_base,
        feedback_db=args.feedback_db,
        data_dir=args.data,
        backend=args.backend,
        model_name=args.model_name,
        timeout=args.timeout,
        reload_interval=args.reload_interval,
        bigquery_table=args.bigquery_table,
        api_key=_env("RECSYS_API_KEY"),
        store=args.store,
        reclaim_idle=args.reclaim_idle,
        canary_share=args.canary_share,
        cors_origins=tuple(args.cors_origin),
        impression_sample=args.impression_sample,
    )


def _store_load(args):
    from proxy import redis_store
    from proxy.history import SEEN_LIMIT
    from tfx_pipeline.data import local_source

    events = local_source.recent_events(local_source.open_data_dir(args.data), SEEN_LIMIT)
    print(
        f"loaded the recent events of {redis_store.load(args.store, events)} users the store had not seen "
        f"into {redis_store.address(args.store)}"
    )


def _recommend(args):
    from proxy.api_client import ApiClient

    with ApiClient(args.api, timeout=args.timeout, api_key=args.api_key or _env("RECSYS_API_KEY")) as api:
        if args.wait:
            api.wait_ready(args.wait)
        answer = api.recommend(args.user_id, args.k)
    print(json.dumps(answer, indent=2))


def _feedback_export(args):
    import sqlite3

    from proxy.feedback_store import FeedbackStore

    if not os.path.exists(args.db):
        raise FileNotFoundError(f"{args.db}: no feedback database")
    try:
        store = FeedbackStore(args.db)
    except sqlite3.DatabaseError as e:
        raise UsageError(f"{args.db}: not a feedback database ({e})") from None
    path = store.export(args.out)
    print(f"wrote {len(store.events())} feedback events to {path}")


def _predict(args):
    from proxy.tf_serving import BackendError, BackendUnavailable, client_for_url

    client = client_for_url(f"grpc://{args.grpc}" if args.grpc else args.rest, args.model, args.timeout)
    try:
        [ranked] = client.recommend(
            [args.user_id], [args.history or []], [args.exclude or []], args.k, args.label
        )
    except (BackendError, BackendUnavailable) as e:
        raise UsageError(str(e)) from None
    print(
        json.dumps(
            {
                "model_version": client.model_version,
                "recommendations": [{"item_id": i, "score": s} for i, s in ranked],
            },
            indent=2,
        )
    )


def _env(name, default=None):
    return os.environ.get(name, default)


def _monitor_report(args):
    from proxy import monitor_api, online_metrics

    if args.bigquery_sql:
        print(online_metrics.bigquery_query(args.bigquery_sql))
        return
    if not os.path.exists(args.db):
        raise FileNotFoundError(f"{args.db}: no feedback database")
    report = monitor_api.online_report(args.db, args.hours, args.k, args.metric, None)
    print(f"served {report['since']} .. {report['until']}, k = {args.k}")
    print(
        f"{'version':>12} {'variant':>8} {'requests':>9} {'ctr@k':>7} {'conv@k':>7} {'fallback':>8} {'items':>6}"
    )
    for r in report["versions"]:
        print(
            f"{r['model_version']:>12} {r['variant'] or '-':>8} {r['requests']:>9} {r['ctr']:>7.4f} "
            f"{r['conversion']:>7.4f} {r['fallback_share']:>8.4f} {r['items']:>6}"
        )
    if not report["versions"]:
        print("no impressions recorded in the window")
    print(report["ab"]["summary"])


def _run_options(p):
    """The options of `recsys pipeline run` (and retrain, which runs it)."""
    p.add_argument(
        "--data", required=True, help="directory with interactions.csv (or *.parquet) and items.csv"
    )
    p.add_argument("--workdir", required=True, help="pipeline root, metadata and pushed models")
    p.add_argument(
        "--epochs", type=_at_least(1), help="training epochs (default: trainer_module/hparams.py's)"
    )
    p.add_argument("--model-name", default="recsys", help="push to WORKDIR/serving/<model-name>/")
    p.add_argument("--hparams", help="JSON object of hyperparameter overrides (trainer_module/hparams.py)")
    p.add_argument(
        "--max-regression",
        type=float,
        default=0.05,
        help="bless a model at most this fraction of nDCG@10 below the last blessed one",
    )
    for comparator, text in (
        ("l-infinity", "L-infinity distance"),
        ("jensen-shannon", "Jensen-Shannon divergence"),
    ):
        p.add_argument(
            f"--drift-{comparator}",
            type=_drift_threshold,
            default=0.1,
            help=f"drift: the largest {text} of the item, category and interaction-type distributions from "
            "the previous run's data that is not reported as drift",
        )
    p.add_argument(
        "--stop-on-drift",
        action="store_true",
        help="a drift over a threshold stops the run: nothing is pushed",
    )


def _drift_threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a threshold above 0, at most 1")
    return value


def _share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share of users from 0 to 1")
    return share


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default after its help, where it has one."""

    def _get_help_string(self, action):
        return super()._get_help_string(action) if action.default not in (None, False) else action.help


def _commands(parser: argparse.ArgumentParser, dest: str = "command"):
    """Subcommands, named COMMAND in usage and errors ("argument COMMAND: invalid choice: ...")."""
    return parser.add_subparsers(
        dest=dest,
        metavar="COMMAND",
        required=True,
        parser_class=lambda **kw: argparse.ArgumentParser(formatter_class=HelpFormatter, **kw),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {importlib.metadata.version('recsys')}"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="keep TensorFlow's C++ info and warning lines and the Google libraries' FutureWarnings",
    )
    groups = _commands(parser, "group")

    data = _commands(groups.add_parser("data", help="make or convert input data"))
    p = data.add_parser("sample", help="synthetic interactions with planted structure")
    p.add_argument("--out", required=True, help="the data directory to write")
    p.add_argument("--users", type=_at_least(1), default=500, help="number of users")
    p.add_argument("--items", type=_at_least(1), default=400, help="number of items")
    p.add_argument(
        "--events", type=_at_least(1), default=20000, help="number of events (at least 5 per user)"
    )
    p.add_argument("--seed", type=int, default=42, help="random seed: the same seed writes the same data")
    p.set_defaults(func=_data_sample)
    p = data.add_parser(
        "movielens", help="convert MovieLens (ml-latest-small or ml-100k) to the data contract"
    )
    p.add_argument("src", help="the unpacked MovieLens directory")
    p.add_argument("--out", required=True, help="the data directory to write")
    p.set_defaults(func=_data_movielens)

    pipeline = _commands(groups.add_parser("pipeline", help="run the TFX pipeline"))
    run_parsers = [
        pipeline.add_parser(
            "run", help="run locally (LocalDagRunner) and push to WORKDIR/serving/<model-name>/"
        ),
        pipeline.add_parser(
            "retrain",
            help="for cron: export the API's feedback into DATA and run, when enough new feedback arrived since "
            "the last run this started or it drifted from that run's data; else do nothing",
        ),
    ]
    for p in run_parsers:
        _run_options(p)
    run_parsers[0].set_defaults(func=_pipeline_run)
    p = run_parsers[1]
    p.add_argument(
        "--feedback-db",
        default=_env("RECSYS_FEEDBACK_DB", "feedback.sqlite"),
        help="the API's --feedback-db; env RECSYS_FEEDBACK_DB",
    )
    p.add_argument(
        "--min-new-events",
        type=_at_least(1),
        default=1000,
        help="run when at least this many new events arrived",
    )
    p.add_argument("--dry-run", action="store_true", help="print the decision, start nothing")
    p.set_defaults(func=_pipeline_retrain)

    p = pipeline.add_parser("compile", help="compile for Vertex AI Pipelines (KubeflowV2DagRunner)")
    p.add_argument("--config", required=True, help="the cloud config (config/cloud.example.yaml)")
    p.add_argument("--out", default="pipeline.json", help="where to write the compiled pipeline")
    p.set_defaults(func=_pipeline_compile)
    p = pipeline.add_parser("submit", help="run on Vertex AI Pipelines, once or on a schedule")
    p.add_argument("--config", required=True, help="the cloud config (config/cloud.example.yaml)")
    p.add_argument("--template", help="a compiled pipeline.json (default: compile now)")
    p.add_argument("--schedule", metavar="CRON", help='retrain on this schedule, e.g. "0 3 * * 1"')
    p.set_defaults(func=_pipeline_submit)

    model = _commands(groups.add_parser("model", help="use a pushed model in-process"))
    p = model.add_parser("show", help="print recommendations for a few users")
    p.add_argument("--model-base", required=True, help="WORKDIR/serving/<model-name>")
    p.add_argument("--data", help="data directory to take the users' recent history from")
    p.add_argument("--user-id", action="append", help="a user to show (repeatable)")
    p.add_argument("-k", type=_at_least(1), default=5, help="recommendations per user")
    p.set_defaults(func=_model_show)
    p = groups.add_parser("serve", help="run the recommendation API")
    p.add_argument(
        "--model-base",
        default=_env("RECSYS_MODEL_BASE"),
        required=_env("RECSYS_MODEL_BASE") is None,
        help="WORKDIR/serving/<model-name> (or gs://...); env RECSYS_MODEL_BASE",
    )
    p.add_argument("--data", default=_env("RECSYS_DATA"), help="data directory to seed user histories from")
    p.add_argument(
        "--backend",
        default=_env("RECSYS_BACKEND"),
        help="TF Serving: grpc://host:8500 (balanced over every address host resolves to), "
        "dns://dns-server/host:8500, or http://host:8501; default: the model in-process",
    )
    p.add_argument("--model-name", default=_env("RECSYS_MODEL_NAME"), help="TF Serving's model name")
    p.add_argument(
        "--canary-share",
        type=_share,
        default=_env("RECSYS_CANARY_SHARE", "0"),
        help="TF Serving: the share of users (0..1, by a hash of their id) whose requests ask for the "
        '"canary" version label, the others "stable"; env RECSYS_CANARY_SHARE',
    )
    p.add_argument(
        "--feedback-db",
        default=_env("RECSYS_FEEDBACK_DB", "feedback.sqlite"),
        help="SQLite file the feedback (and the impressions) are stored in; env RECSYS_FEEDBACK_DB",
    )
    p.add_argument(
        "--impression-sample",
        type=_share,
        default=_env("RECSYS_IMPRESSION_SAMPLE", "1"),
        help="the share of /recommend answers (0..1, by a hash of the request id) recorded as impressions "
        "for the online metrics; env RECSYS_IMPRESSION_SAMPLE",
    )
    p.add_argument(
        "--bigquery-table",
        default=_env("RECSYS_FEEDBACK_TABLE"),
        help="project.dataset.table to stream feedback to as well (Cloud); env RECSYS_FEEDBACK_TABLE",
    )
    p.add_argument(
        "--store",
        default=_env("RECSYS_STORE"),
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
        "--host", default=_env("RECSYS_HOST", "127.0.0.1"), help="address to listen on; env RECSYS_HOST"
    )
    p.add_argument("--port", type=_port, default=_env("PORT", "8080"), help="port to listen on; env PORT")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds allowed for each model call")
    p.add_argument(
        "--reload-interval", type=float, default=5.0, help="seconds between looks for a new version"
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        default=[o for o in _env("RECSYS_CORS_ORIGINS", "").split(",") if o],
        help="a browser origin (https://app.example.com) whose pages may call the API (repeatable; "
        "default: none); env RECSYS_CORS_ORIGINS, comma-separated",
    )
    p.add_argument(
        "--wait-for-model",
        action="store_true",
        help="start without a pushed model and answer 503 until one appears (default: exit 2)",
    )
    p.set_defaults(func=_serve)

    p = groups.add_parser(
        "evaluate", help="ranking quality of a pushed model on a split, against popularity and EASE"
    )
    p.add_argument(
        "--split", required=True, help="a directory made by `recsys benchmark quality` (train/, test.csv)"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model-base", help="evaluate the newest version pushed there")
    which.add_argument(
        "--model-dir", help="evaluate this exported model (e.g. a Trainer output that was not pushed)"
    )
    p.set_defaults(func=_evaluate)

    benchmark = _commands(groups.add_parser("benchmark", help="measurements"))
    p = benchmark.add_parser(
        "quality", help="split 75/25 per user (seed 42), train on 75%%, evaluate on 25%%"
    )
    p.add_argument(
        "--dataset", required=True, help="a data directory, or MovieLens (ml-latest-small, ml-100k)"
    )
    p.add_argument("--workdir", required=True, help="where the split, the pipeline and the results go")
    p.add_argument("--seed", type=int, default=42, help="seed of the split")
    p.add_argument("--hparams", help="JSON object of hyperparameter overrides")
    p.set_defaults(func=_benchmark_quality)

    store = _commands(groups.add_parser("store", help="the shared online store"))
    p = store.add_parser(
        "load",
        help="put each user's recent events of a data directory into the store, for the "
        "users it has not seen (once per deployment; running it again changes nothing)",
    )
    p.add_argument("--data", required=True, help="the training data directory")
    p.add_argument(
        "--store",
        default=_env("RECSYS_STORE"),
        required=_env("RECSYS_STORE") is None,
        metavar="URL",
        help="redis://host:port/db; env RECSYS_STORE",
    )
    p.set_defaults(func=_store_load)

    feedback = _commands(groups.add_parser("feedback", help="the API's stored feedback"))
    p = feedback.add_parser(
        "export",
        help="write the feedback as DIR/interactions-feedback.csv (the data contract), "
        "so the next `recsys pipeline run --data DIR` trains on it",
    )
    p.add_argument(
        "--db",
        default=_env("RECSYS_FEEDBACK_DB", "feedback.sqlite"),
        help="the API's --feedback-db; env RECSYS_FEEDBACK_DB",
    )
    p.add_argument("--out", required=True, help="the data directory of the next training run")
    p.set_defaults(func=_feedback_export)

    monitor = _commands(groups.add_parser("monitor", help="the model in production"))
    p = monitor.add_parser(
        "report",
        help="click-through and conversion at k, coverage and fallbacks per model version and variant, "
        "from the API's impressions and feedback, and the A/B report between stable and canary",
    )
    p.add_argument(
        "--db",
        default=_env("RECSYS_FEEDBACK_DB", "feedback.sqlite"),
        help="the API's --feedback-db; env RECSYS_FEEDBACK_DB",
    )
    p.add_argument("--hours", type=float, default=24, help="the window: requests served in the last HOURS")
    p.add_argument("-k", type=_at_least(1), default=10, help="positions counted")
    p.add_argument("--metric", choices=("ctr", "conversion"), default="ctr", help="the A/B report's metric")
    p.add_argument(
        "--bigquery-sql",
        metavar="FEEDBACK_TABLE",
        help="print the same query for BigQuery over project.dataset.table and the impressions table beside it",
    )
    p.set_defaults(func=_monitor_report)

    p = groups.add_parser("predict", help="ask TF Serving directly (the serving_default signature)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--grpc", metavar="HOST:PORT", help="TF Serving's gRPC port (8500)")
    target.add_argument(
        "--rest", metavar="URL", type=_http_url, help="TF Serving's REST base, e.g. http://host:8501"
    )
    p.add_argument("--model", required=True, help="TF Serving's model name")
    p.add_argument(
        "--label", help="a version label of models.config (stable, canary); default: the newest version"
    )
    p.add_argument("--user-id", required=True, help="the user to recommend for")
    p.add_argument("--history", nargs="*", help="the user's recent item ids, oldest first")
    p.add_argument("--exclude", nargs="*", help="item ids to leave out")
    p.add_argument("-k", type=_at_least(1), default=10, help="number of recommendations")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds allowed for the call")
    p.set_defaults(func=_predict)

    p = groups.add_parser("recommend", help="ask a running API for recommendations")
    p.add_argument("--api", required=True, type=_http_url, help="http://host:port of `recsys serve`")
    p.add_argument("--user-id", required=True, help="the user to recommend for")
    p.add_argument("-k", type=_at_least(1), default=10, help="number of recommendations")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds allowed for each call")
    p.add_argument("--wait", type=float, default=0, help="seconds to wait for the API to be ready")
    p.add_argument("--api-key", help="the API's key, sent as X-API-Key; env RECSYS_API_KEY")
    p.set_defaults(func=_recommend)
    return parser


def quiet():
    """Leaves out the noise no user acts on: TensorFlow's C++ info and warning lines (set before it loads) and the
    Google client libraries' FutureWarnings about Python and package versions (the lock pins them)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        quiet()
    from redis import RedisError

    from proxy.api_client import ApiError
    from tfx_pipeline.cloud_config import ConfigError
    from tfx_pipeline.data.local_source import DataError  # validation.DataAnomalies is one too

    try:
        args.func(args)
    except (UsageError, DataError, ConfigError, FileNotFoundError, ApiError, RedisError) as e:
        print(f"recsys: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
