"""`recsys model show`, `recsys evaluate`, `recsys benchmark quality`: a pushed model used in-process."""

import argparse
import json
import os

from cli.args import UsageError, at_least, commands
from cli.pipeline import hyperparameter_overrides


def _model_show(args):
    if not args.user_id and not args.data:
        raise UsageError(
            "model show: name users with --user-id, or give --data to show its first three users"
        )
    from serving.embedded import EmbeddedModel
    from serving.history import HistoryStore
    from tfx_pipeline.data import local_source

    model = EmbeddedModel.newest(args.model_base)
    store = HistoryStore()
    if args.data:
        store.add_events(local_source.recent_user_events(args.data))
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
                f"  {rank:2d}. {item:>8}  {score:6.3f}  {meta.title if meta else ''} "
                f"[{meta.category if meta else ''}]"
            )


def _evaluate(args) -> dict:
    import evaluation
    from serving import query
    from serving.embedded import EmbeddedModel

    train, test = evaluation.load_split(args.split)
    model = EmbeddedModel.newest(args.model_base) if args.model_base else EmbeddedModel(args.model_dir)
    print(f"model {model.model_version}")
    results = evaluation.compare(train, test, {"model": query.recommendations(model, train, evaluation.K)})
    print(evaluation.report(results))
    with open(os.path.join(args.split, "evaluation.json"), "w") as out:
        json.dump(results, out, indent=2)
    return results


def _benchmark_quality(args):
    import evaluation
    from tfx_pipeline import local_runner
    from tfx_pipeline.data import movielens

    hyperparameters = hyperparameter_overrides(args)
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


def add_commands(groups):
    model = commands(groups.add_parser("model", help="use a pushed model in-process"))
    p = model.add_parser("show", help="print recommendations for a few users")
    p.add_argument("--model-base", required=True, help="WORKDIR/serving/<model-name>")
    p.add_argument("--data", help="data directory to take the users' recent history from")
    p.add_argument("--user-id", action="append", help="a user to show (repeatable)")
    p.add_argument("-k", type=at_least(1), default=5, help="recommendations per user")
    p.set_defaults(func=_model_show)

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

    benchmark = commands(groups.add_parser("benchmark", help="measurements"))
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
