import os

import pytest

import tensorflow_env  # noqa: F401  before anything imports TensorFlow

# The fixtures import what they need when they run: the fast tier (tests/README.md) must not pay for TFX.

SAMPLE = dict(users=300, items=200, events=12000, seed=7)
CLOUD_CONFIG = os.path.join(os.path.dirname(__file__), "..", "config", "cloud.example.yaml")


@pytest.fixture(scope="session")
def sample_split(tmp_path_factory):
    """Sample data with each user's last events held out: (train data dir, {user: held-out items})."""
    from tests import holdout
    from tfx_pipeline.data import sample

    root = tmp_path_factory.mktemp("sample")
    sample.generate(str(root / "all"), **SAMPLE)
    held_out = holdout.split_last_events(str(root / "all"), str(root / "train"), per_user=2)
    return str(root / "train"), held_out


@pytest.fixture(scope="session")
def pipeline_run(sample_split, tmp_path_factory):
    """One real pipeline run on the training part of the sample, shared by the end-to-end tests."""
    from tfx_pipeline import local_runner

    data_dir, _ = sample_split
    workdir = str(tmp_path_factory.mktemp("work"))
    lines = []
    result = local_runner.run(data_dir, workdir, model_name="recsys", echo=lines.append)
    return dict(result, workdir=workdir, data_dir=data_dir, lines=lines)


@pytest.fixture(scope="session")
def cloud_config():
    from tfx_pipeline import cloud_config

    return cloud_config.load(CLOUD_CONFIG)


@pytest.fixture(scope="session")
def compiled_pipeline(tmp_path_factory):
    """The Vertex AI PipelineJob spec `recsys pipeline compile` writes for config/cloud.example.yaml."""
    import cli.main as cli

    path = str(tmp_path_factory.mktemp("vertex") / "pipeline.json")
    assert cli.main(["pipeline", "compile", "--config", CLOUD_CONFIG, "--out", path]) == 0
    return path


@pytest.fixture
def redis_server(tmp_path):
    """A fresh redis-server on 127.0.0.1 for one test (tests/redis_server.py)."""
    from tests.redis_server import RedisServer

    server = RedisServer(str(tmp_path / "redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_model_base(tmp_path_factory):
    """A model base with one tiny pushed version (tests/tiny_model.py): seconds, no pipeline run."""
    from tests import tiny_model

    base = str(tmp_path_factory.mktemp("tiny") / "recsys")
    tiny_model.push(base)
    return base
