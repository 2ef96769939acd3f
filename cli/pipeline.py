"""`recsys pipeline`: run the TFX pipeline here, or compile and submit it to Vertex AI Pipelines."""

import argparse
import json
import os

from cli.args import UsageError, at_least, commands
from cli.serve import FEEDBACK_DB_HELP


def hyperparameter_overrides(args) -> dict:
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

    hyperparameters = hyperparameter_overrides(args)
    local_source.open_data_dir(args.data).close()  # the data contract, before TFX's imports take their minute
    import evaluation
    from tfx_pipeline import local_runner
    from tfx_pipeline.components import drift

    result = local_runner.run(
        args.data,
        args.workdir,
        model_name=args.model_name,
        hyperparameters=hyperparameters,
        **({} if args.max_regression is None else {"max_regression": args.max_regression}),
        drift_thresholds={"l_infinity": args.drift_l_infinity, "jensen_shannon": args.drift_jensen_shannon},
        stop_on_drift=args.stop_on_drift,
    )
    report = result["evaluation"]
    print(drift.describe(result["drift"]))
    print(
        f"\nEvaluator (eval split):\n{evaluation.report(report['metrics'])}\n"
        f"{'blessed' if report['blessed'] else 'NOT blessed'}: {report['reason']}"
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
    if args.config:
        return _pipeline_retrain_in_the_cloud(args)
    if not (args.data and args.workdir):
        raise UsageError("--data and --workdir are required (or --config for Google Cloud)")
    from cli.serve import open_feedback_store
    from tfx_pipeline import retrain

    thresholds = {"l_infinity": args.drift_l_infinity, "jensen_shannon": args.drift_jensen_shannon}
    store = open_feedback_store(args.feedback_db)
    try:
        events = store.events(after_seq=retrain.read_state(args.workdir))
        decision = retrain.decide_on(events, args.workdir, args.min_new_events, thresholds)
        print(f"{'run' if decision.run else 'no run'}: {decision.reason}")
        if not decision.run or args.dry_run:
            return
        print(f"exported the feedback to {store.export(args.data)}")
    finally:
        store.close()
    _pipeline_run(args)
    retrain.write_state(
        args.workdir, events[-1]["seq"]
    )  # after a run that finished: a failed one is tried again


def _pipeline_retrain_in_the_cloud(args):
    """The same decision over the config's BigQuery feedback table; a run is submitted to Vertex AI."""
    from tfx_pipeline import cloud_config, retrain

    config = cloud_config.load(args.config)
    credentials = _credentials()
    until = retrain.utc_now()
    since = retrain.read_cloud_state(config.pipeline_root, config.window_days, until)
    query = retrain.bigquery_runner(config.project, credentials)
    decision = retrain.decide_in_bigquery(query, config.feedback_table, since, until, args.min_new_events)
    print(
        f"{'run' if decision.run else 'no run'}: {decision.reason} "
        f"(event times {since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M} UTC)"
    )
    if not decision.run or args.dry_run:
        return
    print(f"submitted: {_submit(config, args.template, None, credentials).resource_name}")
    retrain.write_cloud_state(
        config.pipeline_root, until
    )  # after the submission: a failed submit counts again


def _drift_threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a threshold above 0, at most 1")
    return value


def _run_options(p, required: bool = True):
    """The options of `recsys pipeline run` (and retrain, which runs it, where --config replaces --data and
    --workdir)."""
    p.add_argument(
        "--data", required=required, help="directory with interactions.csv (or *.parquet) and items.csv"
    )
    p.add_argument("--workdir", required=required, help="pipeline root, metadata and pushed models")
    p.add_argument(
        "--epochs", type=at_least(1), help="training epochs (default: trainer_module/hparams.py's)"
    )
    p.add_argument("--model-name", default="recsys", help="push to WORKDIR/serving/<model-name>/")
    p.add_argument("--hparams", help="JSON object of hyperparameter overrides (trainer_module/hparams.py)")
    p.add_argument(
        "--max-regression",
        type=float,
        help="bless a model at most this fraction of nDCG@10 below the last blessed one "
        "(default: evaluation.MAX_REGRESSION)",
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


def _pipeline_compile(args):
    from tfx_pipeline import cloud_config

    config = cloud_config.load(args.config)  # every problem of the file, before TFX's imports
    from tfx_pipeline import vertex_runner

    print(f"compiled: {vertex_runner.compile_pipeline(config, args.out)}")


def _credentials():
    import google.auth
    import google.auth.exceptions

    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except google.auth.exceptions.DefaultCredentialsError:
        raise UsageError(
            "no Google Cloud credentials: run `gcloud auth application-default login`, or set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
        ) from None
    return credentials


def _submit(config, template: str | None, schedule: str | None, credentials):
    """Submits the compiled `template` (default: compiled now, which takes a minute)."""
    import tempfile

    from tfx_pipeline import vertex_runner

    with tempfile.TemporaryDirectory() as tmp:
        template = template or vertex_runner.compile_pipeline(config, os.path.join(tmp, "pipeline.json"))
        return vertex_runner.submit(config, template, schedule=schedule, credentials=credentials)


def _pipeline_submit(args):
    from tfx_pipeline import cloud_config

    config = cloud_config.load(args.config)
    credentials = _credentials()  # before compiling, which takes a minute
    print(f"submitted: {_submit(config, args.template, args.schedule, credentials).resource_name}")


def add_commands(groups):
    pipeline = commands(groups.add_parser("pipeline", help="run the TFX pipeline"))
    p = pipeline.add_parser(
        "run", help="run locally (LocalDagRunner) and push to WORKDIR/serving/<model-name>/"
    )
    _run_options(p)
    p.set_defaults(func=_pipeline_run)
    p = pipeline.add_parser(
        "retrain",
        help="for cron: export the API's feedback into DATA and run, when enough new feedback arrived since "
        "the last run this started or it drifted from that run's data; else do nothing. With --config: "
        "count the new events in the config's BigQuery feedback table and submit a run to Vertex AI",
    )
    _run_options(p, required=False)
    p.add_argument(
        "--config",
        help="Google Cloud: the cloud config (config/cloud.example.yaml), instead of --data/--workdir",
    )
    p.add_argument(
        "--template", help="with --config: a compiled pipeline.json (default: compile when a run starts)"
    )
    p.add_argument("--feedback-db", help=FEEDBACK_DB_HELP)
    p.add_argument(
        "--min-new-events",
        type=at_least(1),
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
