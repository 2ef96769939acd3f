"""The compiled Vertex AI PipelineJob executed here, task by task through its own container commands
(tests/vertex_harness), as a schedule runs it: three runs, the second after new events reached the table."""

import copy
import csv
import glob
import json
import os
from datetime import timedelta
from unittest import mock

import tensorflow as tf
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from google.cloud.aiplatform_v1 import PipelineJob

import contract
from tests import pipeline_nodes
from tests.vertex_harness.runner import VertexHarness
from tfx_pipeline import vertex_runner
from tfx_pipeline.data import sample

CONTAINER_TASKS = {pipeline_nodes.BIGQUERY_EXAMPLE_GEN, *pipeline_nodes.COMPONENTS}


def scheduled_pipeline_job(config, template) -> dict:
    """What `recsys pipeline submit --schedule` sends: the PipelineJob each scheduled run creates (REST
    form)."""
    sent = {}

    def create_schedule(**request):
        sent.update(request)
        answer = type(request["schedule"]).deserialize(
            type(request["schedule"]).serialize(request["schedule"])
        )
        answer.name = "projects/my-gcp-project/locations/us-central1/schedules/1"
        return answer

    client = mock.Mock(create_schedule=mock.Mock(side_effect=create_schedule))
    with mock.patch.object(aiplatform.PipelineJobSchedule, "_instantiate_client", return_value=client):
        vertex_runner.submit(config, template, schedule="0 3 * * 1", credentials=AnonymousCredentials())
    job = sent["schedule"].create_pipeline_job_request.pipeline_job
    return json.loads(PipelineJob.to_json(job, preserving_proto_field_name=False))


def split_by_time(data_dir: str, earlier: str, later: str, share: float):
    """The sample's events in two CSV files of the contract: the oldest `share` of them, and the rest."""
    with open(os.path.join(data_dir, "interactions.csv")) as src:
        rows = list(csv.reader(src))
    header, events = (
        rows[0],
        sorted(rows[1:], key=lambda row: row[contract.INTERACTION_COLUMNS.index(contract.TIMESTAMP)]),
    )
    cut = int(len(events) * share)
    for path, part in ((earlier, events[:cut]), (later, events[cut:])):
        with open(path, "w", newline="") as out:
            csv.writer(out).writerows([header] + part)


def pushed_versions(harness) -> list[str]:
    return sorted(os.listdir(harness.local("gs://my-recsys-bucket/serving/recsys")))


def examples(harness, job_id) -> int:
    files = glob.glob(
        harness.local(
            f"gs://my-recsys-bucket/pipeline_root/*/{job_id}/BigQueryExampleGen_*/examples/Split-*/*.gz"
        )
    )
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def evaluation_report(harness, job_id) -> dict:
    [path] = glob.glob(
        harness.local(
            f"gs://my-recsys-bucket/pipeline_root/*/{job_id}/Evaluator_*/blessing/{contract.EVALUATION_FILE}"
        )
    )
    with open(path) as fh:
        return json.load(fh)


def test_scheduled_runs_retrain_on_new_events_against_the_last_blessed_model_and_skip_unchanged_data(
    cloud_config, compiled_pipeline, tmp_path
):
    job = scheduled_pipeline_job(cloud_config, compiled_pipeline)
    assert job["serviceAccount"] == "recsys-pipeline@my-gcp-project.iam.gserviceaccount.com"
    assert job["network"] == "projects/123456789012/global/networks/recsys"
    assert all(
        task["cachingOptions"] == {} or task["cachingOptions"].get("enableCache") is not True
        for task in job["pipelineSpec"]["root"]["dag"]["tasks"].values()
    )

    data = str(tmp_path / "data")
    # Fixed times: ExampleGen splits by a hash of each event's time, so times relative to today would train
    # and judge on other events every day.
    sample.generate(data, users=60, items=40, events=4500, seed=5, start=sample.START)
    interactions, feedback = str(tmp_path / "interactions.csv"), str(tmp_path / "feedback.csv")
    later = str(tmp_path / "later.csv")
    split_by_time(data, interactions, later, share=1 / 3)
    with open(feedback, "w", newline="") as out:  # the API's feedback table: empty before the first run
        csv.writer(out).writerow(contract.INTERACTION_COLUMNS)
    harness = VertexHarness(
        str(tmp_path / "vertex"),
        {"my-gcp-project.recsys.interactions": interactions, "my-gcp-project.recsys.feedback": feedback},
        region="us-central1",
        bigquery_now=sample.START + timedelta(days=90),
    )
    catalog = harness.local(cloud_config.catalog_uri)
    os.makedirs(os.path.dirname(catalog))
    os.rename(os.path.join(data, "items.csv"), catalog)

    assert set(harness.run(job, "recsys-1").values()) == {"ran", "resolved"}
    first = evaluation_report(harness, "recsys-1")
    assert first["blessed"] and first["baseline_model"] is None, first
    assert len(pushed_versions(harness)) == 1
    [first_model] = [
        a
        for a in harness.store.data["artifacts"]
        if a["schema_title"] == "tfx.Model" and "/recsys-1/Trainer_" in a["uri"]
    ]
    # Another pipeline's blessing, recorded later in the same metadata store, is not this pipeline's baseline.
    harness.store.record(
        {
            "name": "projects/0/other-model",
            "schema_title": "tfx.Model",
            "uri": "/nowhere",
            "type": first_model["type"],
            "metadata": {},
        }
    )
    harness.store.record(
        {
            **first_model,
            "name": "projects/0/other-blessing",
            "schema_title": "tfx.ModelBlessing",
            "metadata": {
                "blessed": 1.0,
                "current_model_id": "projects/0/other-model",
                "pipeline": "another-pipeline",
            },
        }
    )

    os.replace(later, feedback)  # what users did since, streamed by the API
    # Submitted with caching on (as this project did before), the run reuses run 1's results from ExampleGen
    # to both Trainers: the query text, ExampleGen's only input, never changes. Nothing new is trained, and
    # the Evaluator (its baseline is new) finds run 1's model again.
    cached_job = copy.deepcopy(job)
    for task in cached_job["pipelineSpec"]["root"]["dag"]["tasks"].values():
        task["cachingOptions"] = {"enableCache": True}
    statuses = harness.run(cached_job, "recsys-cached")
    reused = CONTAINER_TASKS - pipeline_nodes.DRIFT_CHECKS - {"Evaluator", "Pusher"}
    assert {statuses[task] for task in reused} == {"cached"}
    assert "nothing new to push" in evaluation_report(harness, "recsys-cached")["reason"]
    assert len(pushed_versions(harness)) == 1
    statuses = harness.run(job, "recsys-2")
    assert all(statuses[task] == "ran" for task in CONTAINER_TASKS)
    second = evaluation_report(harness, "recsys-2")
    assert examples(harness, "recsys-2") == 4500 > examples(harness, "recsys-1")
    assert second["baseline_model"] == first_model["uri"]  # the Resolver found run 1's blessed model by name
    assert "baseline_model" in second["metrics"]
    assert second["blessed"], second  # trained on three times the events of the same users' tastes
    assert len(pushed_versions(harness)) == 2

    harness.run(job, "recsys-3")  # nothing new in the tables
    third = evaluation_report(harness, "recsys-3")
    assert not third["blessed"] and "nothing new to push" in third["reason"]
    assert len(pushed_versions(harness)) == 2

    custom_jobs = [json.load(open(p)) for p in glob.glob(os.path.join(harness.custom_jobs, "*.json"))]
    assert len(custom_jobs) == 6  # two Trainers per run, each a Vertex AI Training CustomJob
    for request in custom_jobs:
        assert request["parent"] == "projects/my-gcp-project/locations/us-central1"
        spec = request["customJob"]["jobSpec"]
        assert spec["serviceAccount"] == cloud_config.pipeline_service_account
        assert spec["network"] == cloud_config.vertex_network
        assert spec["workerPoolSpecs"][0]["machineSpec"]["acceleratorType"] == "NVIDIA_TESLA_T4"
