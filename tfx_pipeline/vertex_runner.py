"""Runs create_pipeline on Google Cloud: compiled with KubeflowV2DagRunner for Vertex AI Pipelines, data from
BigQuery, Beam on Dataflow, training on Vertex AI Training, models pushed to gs://. Every job runs as the
config's service accounts, on its network."""

import json
import os

from tfx import v1 as tfx

from tfx_pipeline.cloud_config import CloudConfig
from tfx_pipeline.components import example_gen
from tfx_pipeline.components.ranking_evaluator import PIPELINE_PROPERTY
from tfx_pipeline.history_query import recent_events_source
from tfx_pipeline.pipeline import create_pipeline

# No task is cached on Vertex: BigQueryExampleGen's inputs (the query text) are the same on every run, so a
# cached run would train on the first run's rows forever. An unchanged table pushes nothing all the same: the
# Evaluator does not bless a model made from the last blessed model's events and recipe.
CACHING = False


def beam_args(config: CloudConfig) -> list[str]:
    """Dataflow for the Beam components (ExampleGen, StatisticsGen, Transform), in our own image, so the
    workers import the same preprocessing code."""
    return [
        "--runner=DataflowRunner",
        f"--project={config.project}",
        f"--region={config.region}",
        f"--temp_location={config.bucket}/tmp",
        f"--staging_location={config.bucket}/staging",
        f"--machine_type={config.dataflow_machine_type}",
        f"--max_num_workers={config.dataflow_max_workers}",
        f"--disk_size_gb={config.dataflow_disk_size_gb}",
        f"--sdk_container_image={config.pipeline_image}",
        f"--service_account_email={config.dataflow_service_account}",
        f"--subnetwork={config.dataflow_subnetwork}",
        "--experiments=use_runner_v2",
    ]


def vertex_training(config: CloudConfig) -> dict:
    """The Vertex AI Training CustomJob both Trainers submit (TFX adds the container's command)."""
    machine = {"machine_type": config.trainer_machine_type}
    if config.trainer_accelerator_count:
        machine.update(
            accelerator_type=config.trainer_accelerator_type,
            accelerator_count=config.trainer_accelerator_count,
        )
    job_spec = {
        "worker_pool_specs": [
            {
                "machine_spec": machine,
                "replica_count": 1,
                "container_spec": {"image_uri": config.trainer_image},
            }
        ],
        "service_account": config.pipeline_service_account,
    }
    if config.vertex_network:
        job_spec["network"] = config.vertex_network
    return {"region": config.region, "project": config.project, "job_spec": job_spec}


def cloud_pipeline(config: CloudConfig):
    source = recent_events_source(config.interactions_table, config.feedback_table, config.window_days)
    return create_pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        example_gen=example_gen.bigquery_example_gen(source),
        serving_model_dir=config.serving_base,
        items_uri=config.catalog_uri,
        beam_pipeline_args=beam_args(config),
        enable_cache=CACHING,
        vertex_training=vertex_training(config),
        drift_thresholds=config.drift_thresholds,
        stop_on_drift=config.stop_on_drift,
    )


def _last_blessing_of_this_pipeline_only(spec: dict, pipeline_name: str) -> None:
    """KubeflowV2DagRunner's query for the last blessing matches the blessings of every pipeline in the
    project's metadata store; the Evaluator marks its blessings with the pipeline's name, and the query asks
    for it."""
    for executor in spec["pipelineSpec"]["deploymentSpec"]["executors"].values():
        for query in executor.get("resolver", {}).get("outputArtifactQueries", {}).values():
            if 'schema_title="tfx.ModelBlessing"' in query["filter"]:
                query["filter"] += f' AND metadata.{PIPELINE_PROPERTY}.string_value="{pipeline_name}"'


def compile_pipeline(config: CloudConfig, out: str) -> str:
    """Writes the Vertex AI Pipelines job spec (JSON); returns its path."""
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=config.pipeline_image),
        output_dir=os.path.dirname(os.path.abspath(out)),
        output_filename=os.path.basename(out),
    )
    runner.run(cloud_pipeline(config))
    with open(out) as fh:
        spec = json.load(fh)
    _last_blessing_of_this_pipeline_only(spec, config.pipeline_name)
    with open(out, "w") as fh:
        json.dump(spec, fh, indent=2, sort_keys=True)
    return out


def pipeline_job(config: CloudConfig, template: str, credentials=None):
    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name=config.pipeline_name,
        template_path=template,
        pipeline_root=config.pipeline_root,
        project=config.project,
        location=config.region,
        credentials=credentials,
        enable_caching=CACHING,
    )


def submit(config: CloudConfig, template: str, schedule: str | None = None, credentials=None):
    """Submits one run, or with a cron `schedule` creates a recurring retraining schedule instead; either runs
    as the pipeline's service account, peered with the configured network."""
    job = pipeline_job(config, template, credentials)
    identity = {"service_account": config.pipeline_service_account, "network": config.vertex_network or None}
    if schedule:
        from google.cloud import aiplatform

        job_schedule = aiplatform.PipelineJobSchedule(
            pipeline_job=job, display_name=f"{config.pipeline_name}-retrain", credentials=credentials
        )
        job_schedule.create(cron=schedule, max_concurrent_run_count=1, **identity)
        return job_schedule
    job.submit(**identity)
    return job
