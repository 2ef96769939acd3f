"""`recsys`: the command line of the project (data, pipeline, model)."""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS 0.7.7 needs Keras 2; set before TensorFlow loads


def _data_sample(args):
    from tfx_pipeline.data import sample
    sample.generate(args.out, users=args.users, items=args.items, events=args.events, seed=args.seed)
    print(f"wrote {args.out}/interactions.csv and {args.out}/items.csv")


def _data_movielens(args):
    from tfx_pipeline.data import movielens
    n = movielens.convert(args.src, args.out)
    print(f"wrote {n} interactions to {args.out}/interactions.csv and the catalog to {args.out}/items.csv")


def _pipeline_run(args):
    from tfx_pipeline import local_runner
    from trainer_module.hparams import HParams
    try:
        hyperparameters = json.loads(args.hparams) if args.hparams else {}
        if args.epochs is not None:
            hyperparameters["epochs"] = args.epochs
        HParams.from_overrides(hyperparameters)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"recsys: error: --hparams: {e}")
    result = local_runner.run(args.data, args.workdir, model_name=args.model_name, hyperparameters=hyperparameters)
    if result["pushed"]:
        print(f"pushed: {result['pushed']}")
    else:
        print("pushed: nothing new (every component was cached; the newest version under "
              f"{local_runner.serving_dir(args.workdir, args.model_name)} is current)")


def _model_show(args):
    from proxy.embedded import EmbeddedModel
    from tfx_pipeline.data import local_source
    model = EmbeddedModel(args.model_base)
    histories = local_source.recent_histories(local_source.open_data_dir(args.data)) if args.data else {}
    users = args.user_id or sorted(histories)[:3]
    print(f"model version {model.version} ({model.index_kind} index)")
    for user, recs in zip(users, model.recommend(users, [histories.get(u, []) for u in users],
                                                 [histories.get(u, []) for u in users], args.k)):
        print(f"\nuser {user} (recent: {', '.join(histories.get(user, [])[-5:]) or 'none'})")
        for rank, (item, score) in enumerate(recs, 1):
            meta = model.items.get(item)
            print(f"  {rank:2d}. {item:>8}  {score:6.3f}  {meta.title if meta else ''} [{meta.category if meta else ''}]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    groups = parser.add_subparsers(dest="group", required=True)

    data = groups.add_parser("data", help="make or convert input data").add_subparsers(dest="command", required=True)
    p = data.add_parser("sample", help="synthetic interactions with planted structure")
    p.add_argument("--out", required=True)
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--items", type=int, default=400)
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=_data_sample)
    p = data.add_parser("movielens", help="convert MovieLens (ml-latest-small or ml-100k) to the data contract")
    p.add_argument("src")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_data_movielens)

    pipeline = groups.add_parser("pipeline", help="run the TFX pipeline").add_subparsers(dest="command", required=True)
    p = pipeline.add_parser("run", help="run locally (LocalDagRunner) and push to WORKDIR/serving/<model-name>/")
    p.add_argument("--data", required=True, help="directory with interactions.csv (or *.parquet) and items.csv")
    p.add_argument("--workdir", required=True)
    p.add_argument("--epochs", type=int)
    p.add_argument("--model-name", default="recsys")
    p.add_argument("--hparams", help="JSON object of hyperparameter overrides (trainer_module/hparams.py)")
    p.set_defaults(func=_pipeline_run)

    model = groups.add_parser("model", help="use a pushed model in-process").add_subparsers(dest="command",
                                                                                            required=True)
    p = model.add_parser("show", help="print recommendations for a few users")
    p.add_argument("--model-base", required=True, help="WORKDIR/serving/<model-name>")
    p.add_argument("--data", help="data directory to take the users' recent history from")
    p.add_argument("--user-id", action="append")
    p.add_argument("-k", type=int, default=5)
    p.set_defaults(func=_model_show)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from tfx_pipeline.data.local_source import DataError
    try:
        args.func(args)
    except (DataError, FileNotFoundError) as e:
        print(f"recsys: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
