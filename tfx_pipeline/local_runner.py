"""Runs create_pipeline on this machine: LocalDagRunner, Beam DirectRunner, SQLite metadata, push to a directory."""

import contextlib
import json
import os
import time
from unittest import mock

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.orchestration.portable import launcher
from tfx.utils import path_utils

import contract
import evaluation
from serving.catalog import pushed_versions
from tfx_pipeline import history_query
from tfx_pipeline.components import drift, example_gen
from tfx_pipeline.data import local_source
from tfx_pipeline.pipeline import code_fingerprint, create_pipeline

PIPELINE_NAME = "recsys"


@contextlib.contextmanager
def _component_progress(echo, timings: dict, executions: dict):
    """Prints each component as it starts and ends, with its wall time, and keeps its execution's id. It
    wraps the launcher rather than reading the runner's log lines, because TensorFlow silences absl logging
    while it saves a model."""
    launch = launcher.Launcher.launch

    def timed_launch(self):
        name, started = self._pipeline_node.node_info.id, time.time()
        echo(f"[pipeline] {name}: started")
        result = launch(self)
        timings[name] = time.time() - started
        if result:
            executions[name] = result.execution_id
        echo(f"[pipeline] {name}: done in {timings[name]:.1f} s")
        return result

    with mock.patch.object(launcher.Launcher, "launch", timed_launch):
        yield


def _recorded_outputs(metadata_path: str, executions: dict) -> dict:
    """{component: {output key: [artifact]}} as the metadata recorded each execution of this run: for a cached
    execution the cached artifacts, which the launcher's own result does not name."""
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
    )
    outputs = {}
    for name, execution_id in executions.items():
        events = [
            e
            for e in store.get_events_by_execution_ids([execution_id])
            if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
        ]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        outputs[name] = {}
        for e in events:
            outputs[name].setdefault(e.path.steps[0].key, []).append(artifacts[e.artifact_id])
    return outputs


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
    "model": the directory of the model pushed if blessed (the RefitTrainer's, or without a refit the
    Trainer's), "evaluation": the Evaluator's report (evaluator.py), "drift": the DriftCheck's report against
    the previous run (drift.py)}; with stop_on_drift, a drift over a threshold raises drift.DataDrift and
    nothing is pushed."""
    local_source.open_data_dir(data_dir).close()  # a contract violation stops here, before any component
    workdir = os.path.abspath(workdir)
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
            os.path.join(workdir, "metadata.sqlite")
        ),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
        max_regression=max_regression,
        drift_thresholds=drift_thresholds,
        stop_on_drift=stop_on_drift,
    )
    before = set(pushed_versions(serving_dir(workdir, model_name)))
    timings, executions = {}, {}
    with _component_progress(echo, timings, executions):
        tfx.orchestration.LocalDagRunner().run(pipeline)
    outputs = _recorded_outputs(os.path.join(workdir, "metadata.sqlite"), executions)
    new = [v for v in pushed_versions(serving_dir(workdir, model_name)) if v not in before]
    [model] = outputs.get("RefitTrainer", outputs["Trainer"])["model"]
    [blessing] = outputs["Evaluator"]["blessing"]
    with open(os.path.join(blessing.uri, contract.EVALUATION_FILE)) as fh:
        report = json.load(fh)
    drift_report = drift.read_report(outputs["DriftCheck"]["drift"][0].uri)
    return {
        "pushed": os.path.join(serving_dir(workdir, model_name), new[-1]) if new else None,
        "timings": timings,
        "model": path_utils.serving_model_path(model.uri),
        "evaluation": report,
        "drift": drift_report,
    }
