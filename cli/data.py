"""`recsys data`: make sample data, or convert MovieLens to the data contract."""

from cli.args import UsageError, at_least, commands


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


def add_commands(groups):
    data = commands(groups.add_parser("data", help="make or convert input data"))
    p = data.add_parser("sample", help="synthetic interactions with planted structure")
    p.add_argument("--out", required=True, help="the data directory to write")
    p.add_argument("--users", type=at_least(1), default=500, help="number of users")
    p.add_argument("--items", type=at_least(1), default=400, help="number of items")
    p.add_argument("--events", type=at_least(1), default=20000, help="number of events (at least 5 per user)")
    p.add_argument("--seed", type=int, default=42, help="random seed: the same seed writes the same data")
    p.set_defaults(func=_data_sample)
    p = data.add_parser(
        "movielens", help="convert MovieLens (ml-latest-small or ml-100k) to the data contract"
    )
    p.add_argument("src", help="the unpacked MovieLens directory")
    p.add_argument("--out", required=True, help="the data directory to write")
    p.set_defaults(func=_data_movielens)
