"""A Trainer that fails its export check pushes nothing, and the next run resumes from the cached components."""

import os
import shutil

import pytest

from tfx_pipeline import local_runner

UPSTREAM = ["FileBasedExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform"]


def test_failed_export_check_pushes_nothing_and_the_rerun_resumes_from_cache(pipeline_run, tmp_path):
    # The shared run's metadata: its components' results are this workdir's cache.
    workdir = str(tmp_path / "work")
    os.makedirs(workdir)
    shutil.copy(os.path.join(pipeline_run["workdir"], "metadata.sqlite"), workdir)
    serving = local_runner.serving_dir(workdir, "recsys")
    lines = []
    with pytest.raises(RuntimeError, match="min_scann_recall"):
        local_runner.run(pipeline_run["data_dir"], workdir, echo=lines.append,
                         hyperparameters={"epochs": 1, "min_scann_recall": 1.01})  # no index can pass
    assert "[pipeline] Trainer: started" in lines and not any(line.startswith("[pipeline] Pusher") for line in lines)
    assert not os.path.exists(serving) or not os.listdir(serving)

    result = local_runner.run(pipeline_run["data_dir"], workdir, echo=lambda _: None, hyperparameters={"epochs": 1})
    assert all(result["timings"][name] < 2 for name in UPSTREAM), result["timings"]  # cached, not re-run
    assert result["pushed"] and os.path.dirname(result["pushed"]) == serving
