"""`recsys monitor report`: the online metrics per model version and variant, the A/B report, and the skew
of the served traffic from the newest pushed version's training data."""

import os

from cli.args import at_least, commands
from cli.serve import FEEDBACK_DB_HELP


def _monitor_report(args):
    from proxy import monitor_api, online_metrics

    if args.bigquery_sql:
        print(online_metrics.bigquery_query(args.bigquery_sql))
        return
    from cli.serve import api_settings

    settings = api_settings()
    args.db = args.db or settings.feedback_db
    if not args.store and not os.path.exists(args.db):
        raise FileNotFoundError(f"{args.db}: no feedback database")
    metrics = online_metrics.source(args.db, args.store)
    report = monitor_api.online_report(metrics, args.hours, args.k, args.metric, None)
    print(f"served {report['since']} .. {report['until']}, k = {args.k}")
    head = ("version", "variant", "requests", "ctr@k", "conv@k", "fallback", "items")
    print("{:>12} {:>8} {:>9} {:>7} {:>7} {:>8} {:>6}".format(*head))
    for r in report["versions"]:
        print(
            f"{r['model_version']:>12} {r['variant'] or '-':>8} {r['requests']:>9} {r['ctr']:>7.4f} "
            f"{r['conversion']:>7.4f} {r['fallback_share']:>8.4f} {r['items']:>6}"
        )
    if not report["versions"]:
        print("no impressions recorded in the window")
    print(report["ab"]["summary"])
    model_base = args.model_base or settings.model_base
    if model_base:
        from proxy.skew import source as skew_source
        from serving.catalog import Catalog, newest_version

        catalog = Catalog(os.path.join(model_base, newest_version(model_base)))
        traffic = skew_source(args.db, args.store)
        skew = monitor_api.skew_report(traffic, catalog, args.hours, settings.skew_thresholds)
        print(skew["summary"])
        for s in skew["sources"]:
            for d in s["distances"]:
                print(f"  {s['source']:>8} {d['feature']:>9} {d['comparator']:>14} {d['distance']:.4f}")


def add_commands(groups):
    monitor = commands(groups.add_parser("monitor", help="the model in production"))
    p = monitor.add_parser(
        "report",
        help="click-through and conversion at k, coverage and fallbacks per model version and variant, "
        "from the API's impressions and feedback, and the A/B report between stable and canary",
    )
    p.add_argument("--db", help=FEEDBACK_DB_HELP)
    p.add_argument(
        "--store",
        metavar="URL",
        help="the API's --store: the metrics over every instance's answers in the shared store (the last "
        "48 h at most)",
    )
    p.add_argument(
        "--model-base",
        help="the API's --model-base: the skew is from its newest version's training data (env "
        "RECSYS_MODEL_BASE; thresholds RECSYS_DRIFT_L_INFINITY, RECSYS_DRIFT_JENSEN_SHANNON)",
    )
    p.add_argument("--hours", type=float, default=24, help="the window: requests served in the last HOURS")
    p.add_argument("-k", type=at_least(1), default=10, help="positions counted")
    p.add_argument("--metric", choices=("ctr", "conversion"), default="ctr", help="the A/B report's metric")
    p.add_argument(
        "--bigquery-sql",
        metavar="FEEDBACK_TABLE",
        help="print the same query for BigQuery over project.dataset.table and the impressions table "
        "beside it",
    )
    p.set_defaults(func=_monitor_report)
