"""`recsys predict` and `recsys recommend`: ask TF Serving or a running API."""

import json

from cli.args import UsageError, at_least, http_url
from cli.serve import api_settings


def _predict(args):
    from serving.tf_serving import BackendError, BackendUnavailable, client_for_url

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


def _recommend(args):
    from proxy.api_client import ApiClient

    with ApiClient(args.api, timeout=args.timeout, api_key=args.api_key or api_settings().api_key) as api:
        if args.wait:
            api.wait_ready(args.wait)
        answer = api.recommend(args.user_id, args.k)
    print(json.dumps(answer, indent=2))


def add_commands(groups):
    p = groups.add_parser("predict", help="ask TF Serving directly (the serving_default signature)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--grpc", metavar="HOST:PORT", help="TF Serving's gRPC port (8500)")
    target.add_argument(
        "--rest", metavar="URL", type=http_url, help="TF Serving's REST base, e.g. http://host:8501"
    )
    p.add_argument("--model", required=True, help="TF Serving's model name")
    p.add_argument(
        "--label", help="a version label of models.config (stable, canary); default: the newest version"
    )
    p.add_argument("--user-id", required=True, help="the user to recommend for")
    p.add_argument("--history", nargs="*", help="the user's recent item ids, oldest first")
    p.add_argument("--exclude", nargs="*", help="item ids to leave out")
    p.add_argument("-k", type=at_least(1), default=10, help="number of recommendations")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds allowed for the call")
    p.set_defaults(func=_predict)

    p = groups.add_parser("recommend", help="ask a running API for recommendations")
    p.add_argument("--api", required=True, type=http_url, help="http://host:port of `recsys serve`")
    p.add_argument("--user-id", required=True, help="the user to recommend for")
    p.add_argument("-k", type=at_least(1), default=10, help="number of recommendations")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds allowed for each call")
    p.add_argument("--wait", type=float, default=0, help="seconds to wait for the API to be ready")
    p.add_argument("--api-key", help="the API's key, sent as X-API-Key; env RECSYS_API_KEY")
    p.set_defaults(func=_recommend)
