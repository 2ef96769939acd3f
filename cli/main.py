"""`recsys`: the command line of the project (data, pipeline, model, API). It is the composition root: the only
code that imports the pipeline, the serving code and the API together; each command module imports its heavy
parts when it runs, so `recsys serve` never loads TFX."""

import argparse
import importlib.metadata
import os
import sys
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS 0.7.7 needs Keras 2; set before TensorFlow loads

from cli import clients, data, model, monitor, pipeline, serve, store  # noqa: E402
from cli.args import HelpFormatter, UsageError, commands  # noqa: E402

DESCRIPTION = "`recsys`: the command line of the project (data, pipeline, model)."
GROUPS = (data, pipeline, model, serve, store, monitor, clients)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {importlib.metadata.version('recsys')}"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="keep TensorFlow's C++ info and warning lines and the Google libraries' FutureWarnings",
    )
    groups = commands(parser, "group")
    for group in GROUPS:
        group.add_commands(groups)
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
