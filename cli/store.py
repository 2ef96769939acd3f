"""`recsys store load` and `recsys feedback export`: the shared online store and the API's stored feedback."""

from cli.args import UsageError, commands
from cli.serve import FEEDBACK_DB_HELP, api_settings, open_feedback_store


def _store_load(args):
    from proxy import redis_store
    from tfx_pipeline.data import local_source

    store = args.store or api_settings().store
    if not store:
        raise UsageError("store load: give the store with --store or env RECSYS_STORE")
    events = local_source.recent_user_events(args.data)
    print(
        f"loaded the recent events of {redis_store.load(store, events)} users the store had not seen "
        f"into {redis_store.address(store)}"
    )


def _feedback_export(args):
    store = open_feedback_store(args.db)
    path = store.export(args.out)
    print(f"wrote {len(store.events())} feedback events to {path}")


def add_commands(groups):
    store = commands(groups.add_parser("store", help="the shared online store"))
    p = store.add_parser(
        "load",
        help="put each user's recent events of a data directory into the store, for the "
        "users it has not seen (once per deployment; running it again changes nothing)",
    )
    p.add_argument("--data", required=True, help="the training data directory")
    p.add_argument("--store", metavar="URL", help="redis://host:port/db; env RECSYS_STORE")
    p.set_defaults(func=_store_load)

    feedback = commands(groups.add_parser("feedback", help="the API's stored feedback"))
    p = feedback.add_parser(
        "export",
        help="write the feedback as DIR/interactions-feedback.csv (the data contract), "
        "so the next `recsys pipeline run --data DIR` trains on it",
    )
    p.add_argument("--db", help=FEEDBACK_DB_HELP)
    p.add_argument("--out", required=True, help="the data directory of the next training run")
    p.set_defaults(func=_feedback_export)
