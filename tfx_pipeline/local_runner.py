"""Runs create_pipeline on this machine: LocalDagRunner, Beam DirectRunner, SQLite metadata, push to a
directory."""

import json
import os

from tfx import v1 as tfx
from tfx.utils import path_utils

import contract
import evaluation
from serving.catalog import pushed_versions
from tfx_pipeline import history_query, metadata
from tfx_pipeline.components import drift, example_gen
from tfx_pipeline.data import local_source
from tfx_pipeline.pipeline import code_fingerprint, create_pipeline

PIPELINE_NAME = "recsys"


def serving_dir(workdir: str, model_name: str) -> str:
    return os.path.join(os.path.abspath(workdir), "serving", model_name)


def run(
    data_dir: str,
    workdir: str,
    model_name: str = PIPELINE_NAME,
    hyperparameters: dict | None = None,
    echo=print,
    max_regression: float = evaluation.MAX_REGRESSION,
    drift_thresholds: dict | None = None,
    stop_on_drift: bool = False,
) -> dict:
    """Runs the pipeline; returns {"pushed": path of the new version or None, "timings": {component: s},
    "model": the directory of the model pushed if blessed (the RefitTrainer's), "evaluation": the Evaluator's
    report (evaluator.py), "drift": the DriftCheck's report against the previous run (drift.py)}; with
    stop_on_drift, a drift over a threshold raises drift.DataDrift and nothing is pushed."""
    local_source.open_data_dir(data_dir).close()  # a contract violation stops here, before any component
    workdir = os.path.abspath(workdir)
    metadata_path = os.path.join(workdir, "metadata.sqlite")
    items = local_source.find_files(data_dir).items_file
    pipeline = create_pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=os.path.join(workdir, "pipeline_root"),
        example_gen=example_gen.local_example_gen(
            data_dir, code_fingerprint(example_gen, history_query, local_source, contract)
        ),
        serving_model_dir=serving_dir(workdir, model_name),
        hyperparameters=hyperparameters,
        items_uri=os.path.abspath(items) if items else None,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path
        ),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
        max_regression=max_regression,
        drift_thresholds=drift_thresholds,
        stop_on_drift=stop_on_drift,
    )
    before = set(pushed_versions(serving_dir(workdir, model_name)))
    progress = metadata.RunProgress(metadata_path, PIPELINE_NAME, echo)
    with progress.following():
        tfx.orchestration.LocalDagRunner().run(pipeline)
    outputs = metadata.recorded_outputs(metadata_path, {n: e.id for n, e in progress.executions.items()})
    new = [v for v in pushed_versions(serving_dir(workdir, model_name)) if v not in before]
    [model], [blessing] = outputs["RefitTrainer"]["model"], outputs["Evaluator"]["blessing"]
    with open(os.path.join(blessing.uri, contract.EVALUATION_FILE)) as fh:
        report = json.load(fh)
    drift_report = drift.read_report(outputs["DriftCheck"]["drift"][0].uri)
    return {
        "pushed": os.path.join(serving_dir(workdir, model_name), new[-1]) if new else None,
        "timings": {name: metadata.seconds(e) for name, e in progress.executions.items()},
        "model": path_utils.serving_model_path(model.uri),
        "evaluation": report,
        "drift": drift_report,
    }
