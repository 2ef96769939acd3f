"""`recsys`: the command line of the project (data, pipeline, model, API). It is the composition root: the
only code that imports the pipeline, the serving code and the API together; each command module imports its
heavy parts when it runs, so `recsys serve` never loads TFX."""

import argparse
import importlib.metadata
import logging
import os
import sys
import warnings

import tensorflow_env  # noqa: F401  before anything imports TensorFlow
from cli import clients, data, model, monitor, pipeline, serve, store
from cli.args import HelpFormatter, UsageError, commands

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
        help="keep TensorFlow's C++ log lines, the Google libraries' FutureWarnings and the libraries' "
        "warnings that the default leaves out",
    )
    groups = commands(parser, "group")
    for group in GROUPS:
        group.add_commands(groups)
    return parser


# Libraries' log messages no user acts on, by logger: each is dropped when its text contains one of these.
LIBRARY_NOISE = {
    "absl": (
        "ArtifactQuery.property_predicate is not supported",  # TFX's resolver on local (SQLite) metadata
        "Tables initialized inside a tf.function",  # TF, on the Transform layer inside the serving signatures
        "Examples artifact does not have payload_format",  # tfx-bsl: then tf.Examples, which they are
        "`custom_executor_spec` is deprecated",  # TFX 1.16 still documents it for a component's own executor
        # A first run has no earlier statistics to compare with: TFX 1.16's LatestArtifactStrategy then
        # returns None, which the local runner logs with a traceback before resolving the input as empty.
        "Error while resolving inputs for previous_statistics",
    ),
    "tensorflow": (
        "arguments contain non-serializable objects",  # tf-keras saving a subclassed model's config (unused)
        "Instructions for updating",  # deprecation notices about TFX's and tfx-bsl's own calls
    ),
}


class _DropLibraryNoise(logging.Filter):
    def __init__(self, texts: tuple):
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


def quiet():
    """Leaves out the noise no user acts on, before TensorFlow loads: its C++ log lines up to errors (the CUDA
    plugin registrations it reports as errors on every start; a real failure raises a Python exception), the
    Google client libraries' FutureWarnings about Python and package versions (the lock pins them) and
    LIBRARY_NOISE."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
    for logger, texts in LIBRARY_NOISE.items():
        logging.getLogger(logger).addFilter(_DropLibraryNoise(texts))


# The errors that mean the input or the environment is wrong, not the code: one line, exit 2. By the module
# that defines each, looked up only once a command imported it, so `recsys serve` in the API image (no
# pipeline packages) needs none of the others.
USER_ERRORS = {
    "tfx_pipeline.data.local_source": "DataError",  # validation.DataAnomalies is one too
    "tfx_pipeline.cloud_config": "ConfigError",
    "proxy.api_client": "ApiError",
    "redis": "RedisError",
}


def _user_errors() -> tuple[type[Exception], ...]:
    loaded = [
        getattr(sys.modules[module], name) for module, name in USER_ERRORS.items() if module in sys.modules
    ]
    return (UsageError, FileNotFoundError, *loaded)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        quiet()
    try:
        args.func(args)
    except Exception as e:
        if not isinstance(e, _user_errors()):
            raise
        print(f"recsys: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
