"""A model that fails its export check or its blessing is never pushed, and the next run resumes from the
cached components."""

import os
import shutil

import pytest

import cli.main as cli
from tfx_pipeline import local_runner
from tfx_pipeline.data import local_source, sample

UPSTREAM = [
    "FileBasedExampleGen",
    "StatisticsGen",
    "ContractSchemaGen",
    "ExampleValidator",
    "AnomaliesGate",
    "Transform",
]


def _workdir_sharing_the_cache(pipeline_run, tmp_path) -> str:
    """A new workdir with the shared run's metadata: its components' results (and its blessed model) are the
    cache."""
    workdir = str(tmp_path / "work")
    os.makedirs(workdir)
    shutil.copy(os.path.join(pipeline_run["workdir"], "metadata.sqlite"), workdir)
    return workdir


def test_failed_export_check_pushes_nothing_and_the_rerun_resumes_from_cache(pipeline_run, tmp_path):
    workdir = _workdir_sharing_the_cache(pipeline_run, tmp_path)
    serving = local_runner.serving_dir(workdir, "recsys")
    lines = []
    with pytest.raises(RuntimeError, match="min_scann_recall"):
        local_runner.run(
            pipeline_run["data_dir"],
            workdir,
            echo=lines.append,
            hyperparameters={"epochs": 1, "min_scann_recall": 1.01},
        )  # no index can pass
    # Whichever of the two Trainers ran first failed the run.
    assert any(line.endswith("Trainer: started") for line in lines)
    assert not any(line.startswith("[pipeline] Pusher") for line in lines)
    assert not os.path.exists(serving) or not os.listdir(serving)

    # Any model that beats most popular is blessed here: this test is about the cache, not the margin.
    result = local_runner.run(
        pipeline_run["data_dir"],
        workdir,
        echo=lambda _: None,
        hyperparameters={"epochs": 1},
        max_regression=1.0,
    )
    assert all(result["timings"][name] < 2 for name in UPSTREAM), result["timings"]  # cached, not re-run
    assert result["pushed"] and os.path.dirname(result["pushed"]) == serving


def test_a_model_that_does_not_beat_popularity_is_not_blessed_nor_pushed(pipeline_run, tmp_path):
    workdir = _workdir_sharing_the_cache(pipeline_run, tmp_path)
    lines = []
    # A learning rate this small leaves the towers at their random start: worse than most popular.
    result = local_runner.run(
        pipeline_run["data_dir"],
        workdir,
        echo=lines.append,
        hyperparameters={"epochs": 1, "learning_rate": 1e-9},
    )
    report = result["evaluation"]
    assert report["blessed"] is False and "does not beat most popular" in report["reason"]
    # The shared run's model, blessed before, was found and evaluated on the same users.
    assert report["metrics"]["baseline_model"]["ndcg@10"] == pytest.approx(
        pipeline_run["evaluation"]["metrics"]["model"]["ndcg@10"], abs=1e-6
    )
    assert result["pushed"] is None and "[pipeline] Pusher: started" in lines
    serving = local_runner.serving_dir(workdir, "recsys")
    assert not os.path.exists(serving) or not os.listdir(serving)


def test_examples_that_break_the_contract_schema_stop_the_run_before_transform(tmp_path, monkeypatch, capsys):
    data = str(tmp_path / "data")
    sample.generate(data, users=20, items=15, events=400, seed=3)
    with open(os.path.join(data, "interactions.csv"), "a") as fh:  # a type the contract does not have
        fh.writelines(f"u00001,i0000{n},wishlist,,2024-03-01T00:00:0{n}Z,g1,\n" for n in range(5))
    # Rows from BigQuery get no local checks: switched off here, ExampleValidator is what must catch this.
    monkeypatch.setattr(local_source, "_check_interactions", lambda con, path, table: [])
    workdir = str(tmp_path / "work")
    assert cli.main(["pipeline", "run", "--data", data, "--workdir", workdir]) == 2
    err = capsys.readouterr().err
    assert "ExampleValidator" in err and "interaction_type" in err and "wishlist" in err
    assert "Traceback" not in err
    assert not os.path.exists(os.path.join(workdir, "pipeline_root", "Transform"))
