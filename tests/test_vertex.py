"""The cloud path offline: the compiled Vertex AI pipeline, the requests aiplatform would send, the BigQuery
ExampleGen executor on the DirectRunner, and the config file's checks."""

import glob
import json
import os
from unittest import mock

import apache_beam as beam
import pytest
import tensorflow as tf
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from tfx.dsl.components.base import base_beam_executor
from tfx.extensions.google_cloud_big_query.example_gen import executor as bq_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts

import cli.main as cli
from tests import pipeline_nodes
from tfx_pipeline import cloud_config, vertex_runner
from tfx_pipeline.data import local_source, sample
from tfx_pipeline.history_query import history_query

CONFIG = os.path.join(os.path.dirname(__file__), "..", "config", "cloud.example.yaml")
COMPONENTS = {pipeline_nodes.BIGQUERY_EXAMPLE_GEN, *pipeline_nodes.COMPONENTS}
RESOLVERS = {
    "last_blessed_model-model-blessing-resolver",
    "last_blessed_model-model-resolver",
    "previous_statistics",
}


@pytest.fixture(scope="module")
def config(cloud_config):
    return cloud_config


@pytest.fixture(scope="module")
def compiled(compiled_pipeline):
    return compiled_pipeline


def parameter(spec, task, name):
    value = spec["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]
    return value["runtimeValue"]["constantValue"]["stringValue"]


def test_compiled_pipeline_has_every_component_in_our_image_with_dataflow_args(compiled, config):
    spec = json.load(open(compiled))
    assert set(spec["pipelineSpec"]["root"]["dag"]["tasks"]) == COMPONENTS | RESOLVERS
    assert spec["runtimeConfig"]["gcsOutputDirectory"] == "gs://my-recsys-bucket/pipeline_root"
    executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
    for name in COMPONENTS:
        container = executors[f"{name}_executor"]["container"]
        assert container["image"] == config.pipeline_image
        args = container["args"]
        for expected in (
            "--runner=DataflowRunner",
            "--project=my-gcp-project",
            "--region=us-central1",
            "--temp_location=gs://my-recsys-bucket/tmp",
            "--max_num_workers=8",
            f"--sdk_container_image={config.pipeline_image}",
            "--service_account_email=recsys-dataflow@my-gcp-project.iam.gserviceaccount.com",
            "--subnetwork=regions/us-central1/subnetworks/recsys",
        ):
            assert expected in args, (name, expected)
    assert "tfx_pipeline.components.pusher.Executor" in executors["Pusher_executor"]["container"]["args"]


def test_pusher_takes_the_evaluators_blessing_and_the_evaluator_the_last_blessed_model(compiled):
    tasks = json.load(open(compiled))["pipelineSpec"]["root"]["dag"]["tasks"]
    source = lambda task, key: tasks[task]["inputs"]["artifacts"][key]["taskOutputArtifact"]  # noqa: E731
    assert source("Pusher", "model_blessing") == {
        "producerTask": "Evaluator",
        "outputArtifactKey": "blessing",
    }
    assert source("Evaluator", "model") == {"producerTask": "Trainer", "outputArtifactKey": "model"}
    # The blessing judges the candidate; the model pushed is the same recipe retrained on every event,
    # averaged with the candidate (its base model).
    assert source("Evaluator", "refit_model") == {
        "producerTask": "RefitTrainer",
        "outputArtifactKey": "model",
    }
    assert source("RefitTrainer", "base_model") == {"producerTask": "Trainer", "outputArtifactKey": "model"}
    assert "base_model" not in tasks["Trainer"]["inputs"].get("artifacts", {})
    assert source("Pusher", "model") == {"producerTask": "RefitTrainer", "outputArtifactKey": "model"}
    assert source("Evaluator", "baseline_model") == {
        "producerTask": "last_blessed_model-model-resolver",
        "outputArtifactKey": "model",
    }
    [resolver] = json.load(open(compiled))["pipelineSpec"]["deploymentSpec"]["executors"][
        "last_blessed_model-model-blessing-resolver_executor"
    ]["resolver"]["outputArtifactQueries"].values()
    assert "metadata.blessed.number_value=1" in resolver["filter"]  # the property RankingEvaluator sets
    assert resolver["filter"].endswith(' AND metadata.pipeline.string_value="recsys"')  # this pipeline's only
    assert source("Evaluator", "baseline_blessing") == {
        "producerTask": "last_blessed_model-model-blessing-resolver",
        "outputArtifactKey": "model_blessing",
    }


@pytest.mark.parametrize("trainer, splits", [("Trainer", ["train"]), ("RefitTrainer", ["train", "eval"])])
def test_both_trainers_run_on_vertex_training_with_the_configured_gpu(compiled, config, trainer, splits):
    spec = json.load(open(compiled))
    assert json.loads(parameter(spec, trainer, "train_args")) == {"splits": splits}
    custom = json.loads(parameter(spec, trainer, "custom_config"))
    assert custom["train_splits"] == splits
    assert (
        custom["ai_platform_enable_vertex"] is True and custom["ai_platform_vertex_region"] == "us-central1"
    )
    job_spec = custom["ai_platform_training_args"]["job_spec"]
    assert job_spec["service_account"] == "recsys-pipeline@my-gcp-project.iam.gserviceaccount.com"
    assert job_spec["network"] == "projects/123456789012/global/networks/recsys"
    [pool] = job_spec["worker_pool_specs"]
    assert pool["machine_spec"] == {
        "machine_type": "n1-standard-8",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1,
    }
    assert pool["container_spec"]["image_uri"] == config.trainer_image
    assert custom["items_uri"] == config.catalog_uri and len(custom["code"]) == 64
    assert parameter(spec, trainer, "run_fn") == "trainer_module.task.run_fn"


def test_pusher_writes_to_the_gcs_serving_base_and_example_gen_reads_recent_interactions_and_feedback(
    compiled,
):
    spec = json.load(open(compiled))
    destination = json.loads(parameter(spec, "Pusher", "push_destination"))
    assert destination == {"filesystem": {"base_directory": "gs://my-recsys-bucket/serving/recsys"}}
    [split] = json.loads(parameter(spec, "BigQueryExampleGen", "input_config"))["splits"]
    query = split["pattern"]
    assert (
        "FROM `my-gcp-project.recsys.interactions`" in query
        and "FROM `my-gcp-project.recsys.feedback`" in query
    )
    assert query.count("INTERVAL 180 DAY") == 2 and "UNIX_SECONDS(timestamp)" in query
    assert "ARRAY_AGG(item_id) OVER" in query


def created(resource, collection):
    """What the service answers a create call with: the resource, now with a name."""
    answer = type(resource).deserialize(type(resource).serialize(resource))
    answer.name = f"projects/my-gcp-project/locations/us-central1/{collection}/1"
    return answer


@pytest.fixture
def no_bucket_check():
    """submit() first makes sure the pipeline root's bucket exists; here nothing is reachable."""
    from google.cloud.aiplatform import pipeline_jobs

    with mock.patch.object(
        pipeline_jobs.gcs_utils, "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist"
    ) as check:
        yield check


def test_submit_sends_a_create_pipeline_job_request(compiled, config, no_bucket_check):
    job = vertex_runner.pipeline_job(config, compiled, credentials=AnonymousCredentials())
    sent = {}
    job.api_client = mock.Mock()
    job.api_client.create_pipeline_job.side_effect = lambda **request: (
        sent.update(request) or created(request["pipeline_job"], "pipelineJobs")
    )
    with mock.patch.object(vertex_runner, "pipeline_job", return_value=job):
        vertex_runner.submit(config, compiled, credentials=AnonymousCredentials())
    assert (
        no_bucket_check.call_args.kwargs["output_artifacts_gcs_dir"] == "gs://my-recsys-bucket/pipeline_root"
    )
    assert sent["parent"] == "projects/my-gcp-project/locations/us-central1"
    request = sent["pipeline_job"]
    assert request.display_name == "recsys"
    assert request.service_account == "recsys-pipeline@my-gcp-project.iam.gserviceaccount.com"
    assert request.network == "projects/123456789012/global/networks/recsys"
    # Caching off in every task: the BigQuery rows are in no cache key (vertex_runner.CACHING).
    assert {
        task["cachingOptions"]["enableCache"]
        for task in request.pipeline_spec["root"]["dag"]["tasks"].values()
        if "cachingOptions" in task
    } == {False}
    assert request.runtime_config.gcs_output_directory == "gs://my-recsys-bucket/pipeline_root"
    assert set(request.pipeline_spec["root"]["dag"]["tasks"]) == COMPONENTS | RESOLVERS
    assert sent["pipeline_job_id"].startswith("recsys-")


def test_schedule_sends_a_create_schedule_request_with_the_cron(compiled, config):
    from google.cloud import aiplatform

    sent = {}

    def create_schedule(**request):
        sent.update(request)
        return created(request["schedule"], "schedules")

    client = mock.Mock(create_schedule=mock.Mock(side_effect=create_schedule))
    with mock.patch.object(aiplatform.PipelineJobSchedule, "_instantiate_client", return_value=client):
        vertex_runner.submit(config, compiled, schedule="0 3 * * 1", credentials=AnonymousCredentials())
    schedule = sent["schedule"]
    assert sent["parent"] == "projects/my-gcp-project/locations/us-central1"
    assert schedule.cron == "0 3 * * 1" and schedule.max_concurrent_run_count == 1
    assert (
        schedule.create_pipeline_job_request.pipeline_job.service_account
        == "recsys-pipeline@my-gcp-project.iam.gserviceaccount.com"
    )
    assert (
        schedule.create_pipeline_job_request.pipeline_job.runtime_config.gcs_output_directory
        == "gs://my-recsys-bucket/pipeline_root"
    )


def test_config_problems_are_listed_together_before_compiling(tmp_path, capsys):
    bad = tmp_path / "cloud.yaml"
    bad.write_text(
        open(CONFIG)
        .read()
        .replace("region: us-central1", "region: 12")
        .replace("bucket: gs://my-recsys-bucket", "bucket: s3://elsewhere")
        .replace("accelerator_count: 1", "accelerator_count: many")
        .replace("recsys-dataflow@my-gcp-project.iam", "recsys-dataflow@my-gcp-project.iam.google")
    )
    out = tmp_path / "pipeline.json"
    assert cli.main(["pipeline", "compile", "--config", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "4 problem(s)" in err and "region: expected a string" in err and "bucket: 's3://elsewhere'" in err
    assert "identity.dataflow_service_account: 'recsys-dataflow@my-gcp-project.iam.google" in err
    assert "trainer.accelerator_count: expected an integer" in err
    assert not out.exists()


# What BigQuery reports for the history query's result columns (BigQueryExampleGen reads it for the types).
QUERY_SCHEMA = [
    bigquery.SchemaField("user_id", "STRING"),
    bigquery.SchemaField("item_id", "STRING"),
    bigquery.SchemaField("interaction_type", "STRING"),
    bigquery.SchemaField("rating", "FLOAT"),
    bigquery.SchemaField("timestamp", "INTEGER"),
    bigquery.SchemaField("category", "STRING"),
    bigquery.SchemaField("history", "STRING", mode="REPEATED"),
]


def test_bigquery_example_gen_executor_on_the_direct_runner(tmp_path, config):
    """The real executor; BigQuery's answers replaced by the rows the same SQL gives in DuckDB."""
    sample.generate(str(tmp_path / "data"), users=20, items=15, events=300, seed=3)
    con = local_source.open_data_dir(str(tmp_path / "data"))
    cursor = con.execute(history_query(local_source.INTERACTIONS_TABLE))
    names = [d[0] for d in cursor.description]
    # BigQuery returns an empty ARRAY where DuckDB returns NULL.
    rows = [{**dict(zip(names, row)), "history": row[-1] or []} for row in cursor.fetchall()]
    queries = []
    client = mock.Mock()
    client.return_value.query.return_value.result.return_value.schema = QUERY_SCHEMA
    example_gen = vertex_runner.cloud_pipeline(config).components[0]

    def run(rows, out):
        @beam.ptransform_fn
        def read_from_bigquery(pipeline, query, big_query_custom_config=None):
            queries.append(query)
            return pipeline | beam.Create(rows)

        examples = standard_artifacts.Examples()
        examples.uri = str(tmp_path / out)
        with (
            mock.patch.object(bq_executor.bigquery, "Client", client),
            mock.patch.object(bq_executor.utils, "ReadFromBigQuery", read_from_bigquery),
        ):
            context = base_beam_executor.BaseBeamExecutor.Context(
                beam_pipeline_args=["--project=my-gcp-project"]
            )
            bq_executor.Executor(context).Do(
                {},
                {"examples": [examples]},
                {
                    "input_config": example_gen.exec_properties["input_config"],
                    "output_config": example_gen.exec_properties["output_config"],
                    "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
                    "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
                },
            )
        return {
            split: [
                tf.train.Example.FromString(r.numpy())
                for path in glob.glob(str(tmp_path / out / f"Split-{split}" / "*.gz"))
                for r in tf.data.TFRecordDataset(path, "GZIP")
            ]
            for split in ("train", "eval")
        }

    def events(examples):
        return {
            tuple(
                e.features.feature[name].SerializeToString() for name in ("user_id", "item_id", "timestamp")
            )
            for e in examples
        }

    splits = run(rows, "examples")
    assert "my-gcp-project.recsys.feedback" in queries[0]
    assert client.call_args.kwargs["project"] == "my-gcp-project"
    parsed = splits["train"] + splits["eval"]
    assert len(parsed) == len(rows) == 300
    held_out = len(splits["eval"])
    assert 5 <= held_out <= 27  # one event in twenty is held out (hash buckets 19:1), the rest trains
    # The next run: new events changed every history. No event may change sides, or the model blessed last
    # time would have trained on this run's held-out events.
    rerun = run([{**row, "history": row["history"][1:] + ["new-item"]} for row in rows], "examples-next")
    assert events(rerun["eval"]) == events(splits["eval"]) and events(rerun["train"]) == events(
        splits["train"]
    )
    with_history = [e for e in parsed if e.features.feature["history"].bytes_list.value]
    assert with_history and all(e.features.feature["timestamp"].int64_list.value for e in parsed)
    assert all(len(e.features.feature["history"].bytes_list.value) <= 20 for e in parsed)


def test_the_dataflow_subnetwork_must_be_in_the_pipelines_region(tmp_path):
    bad = tmp_path / "cloud.yaml"
    bad.write_text(
        open(CONFIG).read().replace("regions/us-central1/subnetworks", "regions/europe-west4/subnetworks")
    )
    with pytest.raises(
        cloud_config.ConfigError, match="in region europe-west4, not the pipeline's region us-central1"
    ):
        cloud_config.load(str(bad))
