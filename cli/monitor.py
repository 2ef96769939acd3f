"""`recsys monitor report`: the online metrics per model version and variant, and the A/B report."""

from cli.args import at_least, commands
from cli.serve import FEEDBACK_DB_HELP, feedback_db_path


def _monitor_report(args):
    from proxy import monitor_api, online_metrics

    if args.bigquery_sql:
        print(online_metrics.bigquery_query(args.bigquery_sql))
        return
    report = monitor_api.online_report(feedback_db_path(args.db), args.hours, args.k, args.metric, None)
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


def add_commands(groups):
    monitor = commands(groups.add_parser("monitor", help="the model in production"))
    p = monitor.add_parser(
        "report",
        help="click-through and conversion at k, coverage and fallbacks per model version and variant, "
        "from the API's impressions and feedback, and the A/B report between stable and canary",
    )
    p.add_argument("--db", help=FEEDBACK_DB_HELP)
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
