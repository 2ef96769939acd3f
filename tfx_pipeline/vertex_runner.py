"""Runs create_pipeline on Google Cloud: compiled with KubeflowV2DagRunner for Vertex AI Pipelines, data from
BigQuery, Beam on Dataflow, training on Vertex AI Training, models pushed to gs://."""

import os

from tfx import v1 as tfx

from tfx_pipeline import example_gen
from tfx_pipeline.cloud_config import CloudConfig
from tfx_pipeline.history_query import recent_events_source
from tfx_pipeline.pipeline import create_pipeline

HYPERPARAMETERS = {"epochs": 10}


def beam_args(config: CloudConfig) -> list[str]:
    """Dataflow for the Beam components (ExampleGen, StatisticsGen, Transform), in our own image, so the
    workers import the same preprocessing code."""
    return ["--runner=DataflowRunner", f"--project={config.project}", f"--region={config.region}",
            f"--temp_location={config.bucket}/tmp", f"--staging_location={config.bucket}/staging",
            f"--machine_type={config.dataflow_machine_type}", f"--max_num_workers={config.dataflow_max_workers}",
            f"--disk_size_gb={config.dataflow_disk_size_gb}", f"--sdk_container_image={config.pipeline_image}",
            "--experiments=use_runner_v2"]


def vertex_training(config: CloudConfig) -> dict:
    machine = {"machine_type": config.trainer_machine_type}
    if config.trainer_accelerator_count:
        machine.update(accelerator_type=config.trainer_accelerator_type,
                       accelerator_count=config.trainer_accelerator_count)
    return {"region": config.region, "project": config.project,
            "worker_pool_specs": [{"machine_spec": machine, "replica_count": 1,
                                   "container_spec": {"image_uri": config.trainer_image}}]}


def cloud_pipeline(config: CloudConfig):
    source = recent_events_source(config.interactions_table, config.feedback_table, config.window_days)
    return create_pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        example_gen=example_gen.bigquery_example_gen(source),
        serving_model_dir=config.serving_base,
        hyperparameters=HYPERPARAMETERS,
        items_uri=config.catalog_uri,
        beam_pipeline_args=beam_args(config),
        vertex_training=vertex_training(config))


def compile_pipeline(config: CloudConfig, out: str) -> str:
    """Writes the Vertex AI Pipelines job spec (JSON); returns its path."""
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=config.pipeline_image),
        output_dir=os.path.dirname(os.path.abspath(out)), output_filename=os.path.basename(out))
    runner.run(cloud_pipeline(config))
    return out


def pipeline_job(config: CloudConfig, template: str, credentials=None):
    from google.cloud import aiplatform
    return aiplatform.PipelineJob(display_name=config.pipeline_name, template_path=template,
                                  pipeline_root=config.pipeline_root, project=config.project,
                                  location=config.region, credentials=credentials, enable_caching=True)


def submit(config: CloudConfig, template: str, schedule: str | None = None, credentials=None):
    """Submits one run, or with a cron `schedule` creates a recurring retraining schedule instead."""
    job = pipeline_job(config, template, credentials)
    if schedule:
        from google.cloud import aiplatform
        job_schedule = aiplatform.PipelineJobSchedule(pipeline_job=job, display_name=f"{config.pipeline_name}-retrain",
                                                      credentials=credentials)
        job_schedule.create(cron=schedule, max_concurrent_run_count=1)
        return job_schedule
    job.submit()
    return job
