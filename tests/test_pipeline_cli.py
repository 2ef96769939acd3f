"""`recsys pipeline run` as a user runs it (a subprocess, outside `make`), twice on the same small sample: its
output carries no warnings at the default verbosity, and the two runs push the same model."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

RECSYS = os.path.join(os.path.dirname(sys.executable), "recsys")
# What must not reach a user at the default verbosity: Python warnings, library log lines at warning level
# or above, error logs and tracebacks, TensorFlow's C++ log lines ("2026-... E external/..."), deprecation
# notices, loss companions.
NOISE = re.compile(
    r"warning|^\S+ \S+: [IWEF] |^[IWEF]\d{4} |^ERROR:|Traceback|Instructions for updating|regularization_loss"
    r"|total_loss",
    re.IGNORECASE | re.MULTILINE,
)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two pipeline runs over the same sample into two workdirs: [(exit code, stdout, stderr, workdir)]."""
    root = tmp_path_factory.mktemp("pipeline-cli")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as outside `make`
    data = str(root / "data")
    sample = ["data", "sample", "--out", data, "--users", "100", "--items", "80", "--events", "3000"]
    subprocess.run([RECSYS, *sample], check=True, capture_output=True, env=env, timeout=120)
    runs = []
    for n in range(2):
        workdir = str(root / f"work{n}")
        run = subprocess.run(
            [RECSYS, "pipeline", "run", "--data", data, "--workdir", workdir, "--hparams", '{"epochs": 2}'],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
        runs.append((run.returncode, run.stdout, run.stderr, workdir))
    return runs


def test_a_pipeline_run_prints_no_warnings(two_runs):
    for code, out, err, _ in two_runs:
        assert code == 0, err[-3000:]
        assert "pushed: " in out
        assert not NOISE.search(out + err), NOISE.findall(out + err)
        epochs = re.findall(r"- loss: (\S+) - val_loss: (\S+)", out + err)
        assert len(epochs) == 4  # two epochs of each Trainer (the candidate and the refit)
        # Per example (a softmax over at most 80 items: about log(80) = 4.4 at the start), not summed.
        assert all(0 < float(loss) < 10 and 0 < float(val) < 10 for loss, val in epochs), epochs


def _variables(saved_model_dir: str) -> dict:
    reader = tf.train.load_checkpoint(os.path.join(saved_model_dir, "variables", "variables"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_the_same_data_and_seed_push_the_same_model(two_runs):
    from serving.catalog import newest_version
    from serving.embedded import EmbeddedModel

    bases = [os.path.join(workdir, "serving", "recsys") for *_, workdir in two_runs]
    # The trained model (towers, embeddings, item biases: the brute-force SavedModel's variables) is equal to
    # the bit.
    first_vars, second_vars = (_variables(os.path.join(b, newest_version(b))) for b in bases)
    assert first_vars.keys() == second_vars.keys()
    for name, value in first_vars.items():
        np.testing.assert_array_equal(value, second_vars[name], err_msg=name)
    # The ScaNN index built from it trains its partitions on every core, so its last bits may differ between
    # builds; on this catalog it searches every leaf, so it answers with the same items.
    models = [EmbeddedModel.newest(b) for b in bases]
    users = [f"u{n:05d}" for n in range(0, 100, 7)] + ["a-new-user"]
    histories = [[f"i{(3 * n) % 80:05d}", f"i{(5 * n) % 80:05d}"] for n in range(len(users))]
    first, second = (m.recommend(users, histories, [[]] * len(users), 10) for m in models)
    assert [[i for i, _ in row] for row in first] == [[i for i, _ in row] for row in second]
    np.testing.assert_allclose(
        [[s for _, s in row] for row in first], [[s for _, s in row] for row in second], rtol=1e-6
    )
    first, second = (m.similar(["i00001", "i00002"], 5) for m in models)
    assert [[i for i, _ in row] for row in first] == [[i for i, _ in row] for row in second]
