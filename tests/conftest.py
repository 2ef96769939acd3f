import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before anything imports TensorFlow

import pytest  # noqa: E402

import cli.main as cli
from tests import holdout  # noqa: E402
from tfx_pipeline import cloud_config as cloud_config_module
from tfx_pipeline import local_runner  # noqa: E402
from tfx_pipeline.data import sample  # noqa: E402

SAMPLE = dict(users=300, items=200, events=12000, seed=7)
CLOUD_CONFIG = os.path.join(os.path.dirname(__file__), "..", "config", "cloud.example.yaml")


@pytest.fixture(scope="session")
def sample_split(tmp_path_factory):
    """Sample data with each user's last events held out: (train data dir, {user: held-out items})."""
    root = tmp_path_factory.mktemp("sample")
    sample.generate(str(root / "all"), **SAMPLE)
    held_out = holdout.split_last_events(str(root / "all"), str(root / "train"), per_user=2)
    return str(root / "train"), held_out


@pytest.fixture(scope="session")
def pipeline_run(sample_split, tmp_path_factory):
    """One real pipeline run on the training part of the sample, shared by the end-to-end tests."""
    data_dir, _ = sample_split
    workdir = str(tmp_path_factory.mktemp("work"))
    lines = []
    result = local_runner.run(data_dir, workdir, model_name="recsys", echo=lines.append)
    return dict(result, workdir=workdir, data_dir=data_dir, lines=lines)


@pytest.fixture(scope="session")
def cloud_config():
    return cloud_config_module.load(CLOUD_CONFIG)


@pytest.fixture(scope="session")
def compiled_pipeline(tmp_path_factory):
    """The Vertex AI PipelineJob spec `recsys pipeline compile` writes for config/cloud.example.yaml."""
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
