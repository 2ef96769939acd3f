"""`recsys pipeline run` as a user runs it (a subprocess, outside `make`) on a small sample: its output
carries no warnings at the default verbosity."""

import os
import re
import subprocess
import sys

import pytest

RECSYS = os.path.join(os.path.dirname(sys.executable), "recsys")
# What must not reach a user at the default verbosity: Python warnings, library log lines at warning level
# or above, TensorFlow's C++ log lines ("2026-... E external/..."), deprecation notices, loss companions.
NOISE = re.compile(
    r"warning|^\S+ \S+: [IWEF] |^[IWEF]\d{4} |Instructions for updating|regularization_loss|total_loss",
    re.IGNORECASE | re.MULTILINE,
)


@pytest.fixture(scope="module")
def pipeline_output(tmp_path_factory):
    """(exit code, stdout, stderr) of a pipeline run on a small sample."""
    root = tmp_path_factory.mktemp("pipeline-cli")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as outside `make`
    data = str(root / "data")
    sample = ["data", "sample", "--out", data, "--users", "100", "--items", "80", "--events", "3000"]
    subprocess.run([RECSYS, *sample], check=True, capture_output=True, env=env, timeout=120)
    run = subprocess.run(
        [
            RECSYS,
            "pipeline",
            "run",
            "--data",
            data,
            "--workdir",
            str(root / "work"),
            "--hparams",
            '{"epochs": 2}',
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    return run.returncode, run.stdout, run.stderr


def test_a_pipeline_run_prints_no_warnings(pipeline_output):
    code, out, err = pipeline_output
    assert code == 0, err[-3000:]
    assert "pushed: " in out
    assert not NOISE.search(out + err), NOISE.findall(out + err)
    epochs = re.findall(r"- loss: (\S+) - val_loss: (\S+)", out + err)
    assert len(epochs) == 4  # two epochs of each Trainer (the candidate and the refit)
    # Per example (a softmax over at most 80 items: about log(80) = 4.4 at the start), not summed.
    assert all(0 < float(loss) < 10 and 0 < float(val) < 10 for loss, val in epochs), epochs
