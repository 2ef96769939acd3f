"""The command line: user errors are exit 2 and one line naming the problem, found before any heavy import;
no library noise by default."""

import os
import re
import subprocess
import sys
import time

import pytest

import cli.main as cli

RECSYS = os.path.join(os.path.dirname(sys.executable), "recsys")


def recsys(capsys, *argv) -> tuple[int, str]:
    """(exit code, stderr) of `recsys argv...` run in this process."""
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_a_missing_data_directory_is_named_before_tensorflow_loads(tmp_path):
    started = time.monotonic()
    run = subprocess.run(
        [RECSYS, "pipeline", "run", "--data", "/nonexistent", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and run.stderr.strip() == "recsys: error: /nonexistent: not a directory"
    assert time.monotonic() - started < 15  # TFX's imports alone take 40 s and more on this machine
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--users", "0", "argument --users: must be >= 1, got 0"),
        ("--events", "-5", "argument --events: must be >= 1, got -5"),
        (
            "--events",
            "20",
            "--events: at least 5 per user are drawn, so at least 2500 for --users 500; got 20",
        ),
    ],
)
def test_sample_sizes_are_checked(tmp_path, capsys, option, value, message):
    code, err = recsys(capsys, "data", "sample", "--out", str(tmp_path), option, value)
    assert code == 2 and message in err
    assert not os.listdir(tmp_path)


def test_predict_needs_a_url_with_a_scheme(capsys):
    code, err = recsys(capsys, "predict", "--rest", "127.0.0.1:8501", "--model", "m", "--user-id", "u")
    assert (
        code == 2 and "argument --rest: expected http://host:port (or https://), got '127.0.0.1:8501'" in err
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--hparams", '{"epochs": "two"}'], "--hparams: epochs: Input should be a valid integer, got 'two'"),
        (["--hparams", '{"item_bias": 1}'], "--hparams: item_bias: Input should be a valid boolean, got 1"),
        (
            ["--hparams", '{"epochs": 0}'],
            "--hparams: epochs: Input should be greater than or equal to 1, got 0",
        ),
        (["--hparams", '{"lr": 1}'], "--hparams: unknown hyperparameter(s) ['lr']"),
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    ],
)
def test_hyperparameters_are_checked_by_name_and_type(tmp_path, capsys, argv, message):
    code, err = recsys(
        capsys, "pipeline", "run", "--data", str(tmp_path), "--workdir", str(tmp_path / "w"), *argv
    )
    assert code == 2 and message in err
    assert not os.path.exists(tmp_path / "w")


def test_model_show_asks_for_users(tmp_path, capsys):
    code, err = recsys(capsys, "model", "show", "--model-base", str(tmp_path))
    assert code == 2 and "name users with --user-id, or give --data" in err


def test_feedback_export_names_a_file_that_is_no_database(tmp_path, capsys):
    db = tmp_path / "feedback.sqlite"
    db.write_text("user_id,item_id\n" * 100)
    code, err = recsys(capsys, "feedback", "export", "--db", str(db), "--out", str(tmp_path / "out"))
    assert code == 2 and f"{db}: not a feedback database" in err


def test_misspelt_cloud_config_keys_are_named_before_tfx_loads(tmp_path):
    example = os.path.join(os.path.dirname(__file__), "..", "config", "cloud.example.yaml")
    with open(example) as fh:
        text = fh.read()
    bad = tmp_path / "cloud.yaml"
    bad.write_text(text.replace("  grpc_port:", "  grpc_prt:") + "schedul: '0 3 * * 1'\n")
    started = time.monotonic()
    run = subprocess.run(
        [RECSYS, "pipeline", "compile", "--config", str(bad), "--out", str(tmp_path / "p.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "serving.grpc_prt: unknown setting (did you mean serving.grpc_port?)" in run.stderr
    assert "serving.grpc_port: missing" in run.stderr and "schedul: unknown setting" in run.stderr
    assert time.monotonic() - started < 15


def test_submit_without_credentials_says_so_before_compiling(tmp_path):
    config = os.path.join(os.path.dirname(__file__), "..", "config", "cloud.example.yaml")
    env = {
        k: v for k, v in os.environ.items() if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG")
    }
    env.update(
        HOME=str(tmp_path), GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9"
    )  # not on GCE
    started = time.monotonic()
    run = subprocess.run(
        [RECSYS, "pipeline", "submit", "--config", config],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (
        "recsys: error: no Google Cloud credentials: run `gcloud auth application-default "
        "login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
    )
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("verbose", [False, True])
def test_no_library_noise_by_default_and_the_detail_with_v(tmp_path, verbose):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as outside `make`
    run = subprocess.run(
        [
            RECSYS,
            *(["-v"] if verbose else []),
            "pipeline",
            "compile",
            "--config",
            os.path.join(os.path.dirname(__file__), "..", "config", "cloud.example.yaml"),
            "--out",
            str(tmp_path / "p.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert ("FutureWarning" in run.stderr) == verbose
    # TensorFlow's C++ log lines (the CUDA plugin registrations are errors, on every start)
    assert bool(re.search(r"^\S+ \S+: [IWE] ", run.stderr, re.MULTILINE)) == verbose, run.stderr


@pytest.mark.parametrize(
    "bad_row, reason",
    [
        ("u2,i1,view,,2024-05-01T12:30:00Z,a,extra", "Expected Number of Columns: 6 Found: 7"),
        ("u2,i1,view", "Expected Number of Columns: 6 Found: 3"),
        ('u2,"i1,view,,2024-05-01T12:30:00Z,a', "unterminated quote"),
    ],
)
def test_a_malformed_csv_row_is_named_by_its_line_in_the_file_with_the_full_reason(tmp_path, bad_row, reason):
    good = "u1,i{},view,,2024-05-01T12:30:00Z,a"
    rows = [good.format(n) for n in range(40)]
    rows.insert(30, bad_row)  # line 32 of the file: the header is line 1
    (tmp_path / "interactions.csv").write_text(
        "user_id,item_id,interaction_type,rating,timestamp,category\n" + "\n".join(rows) + "\n"
    )
    run = subprocess.run(
        [RECSYS, "pipeline", "run", "--data", str(tmp_path), "--workdir", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "interactions.csv line 32: " in run.stderr and reason in run.stderr
    assert bad_row[:10] in run.stderr
