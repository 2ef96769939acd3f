"""create_pipeline: the one definition of the pipeline; runners only configure it."""

import dataclasses
import glob
import hashlib
import json
import os

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import pipeline as tfx_pipeline_lib

import contract
import evaluation
import serving
import trainer_module
from serving import distances
from tfx_pipeline.components import drift, ranking_evaluator, validation
from tfx_pipeline.components import pusher as pusher_executor
from trainer_module import refit
from trainer_module.hparams import HParams
from transform import preprocessing

PREPROCESSING_FN = "transform.preprocessing.preprocessing_fn"
RUN_FN = "trainer_module.task.run_fn"


def code_fingerprint(*modules) -> str:
    """A hash of the source of the given modules (a package: all its files). Components that name their code
    by module path or class are cached by TFX without looking into it; this as a property makes a change
    re-run them."""
    digest = hashlib.sha256()
    for module in modules:
        if hasattr(module, "__path__"):
            paths = sorted(glob.glob(os.path.join(module.__path__[0], "**", "*.py"), recursive=True))
        else:
            paths = [module.__file__]
        for path in paths:
            digest.update(os.path.basename(path).encode())
            with open(path, "rb") as fh:
                digest.update(fh.read())
    return digest.hexdigest()


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    example_gen,
    serving_model_dir: str,
    hyperparameters: dict | None = None,
    items_uri: str | None = None,
    beam_pipeline_args: list | None = None,
    metadata_connection_config=None,
    enable_cache: bool = True,
    vertex_training: dict | None = None,
    max_regression: float = evaluation.MAX_REGRESSION,
    drift_thresholds: dict | None = None,
    stop_on_drift: bool = False,
) -> tfx_pipeline_lib.Pipeline:
    """Wires ExampleGen → StatisticsGen → ExampleValidator (against the contract's schema; anomalies stop the
    run) → Transform → Trainer (without the eval split) → Evaluator
    (against the last blessed model, which a Resolver finds) → Pusher (blessed models only: the
    RefitTrainer's, trained on every event as hyperparameters' `refit` says (trainer_module/refit.py), or the
    candidate's).

    example_gen: the data source component (tfx_pipeline.components.example_gen: local files or BigQuery).
    serving_model_dir: the push destination (`<base>/<model-name>`; a directory or gs://).
    hyperparameters: overrides of trainer_module.hparams.HParams, by field name.
    items_uri: optional items catalog (item_id,title,category) shipped inside the pushed model.
    vertex_training: {"region", "project", "worker_pool_specs"}: train on Vertex AI Training (with GPUs as
        the worker pool says) instead of in the pipeline's own container.
    max_regression: how far (a fraction of nDCG@10) a model may fall below the last blessed one and still
        be blessed; it must beat most popular in any case.
    drift_thresholds: {"l_infinity": x, "jensen_shannon": y} for the DriftCheck against the previous run's
        statistics (tfx_pipeline/components/drift.py); stop_on_drift: a distance over its threshold fails the
        run before Transform, so nothing is pushed.
    """
    checks = _data_checks(example_gen, drift_thresholds, stop_on_drift)
    transform = _transform(example_gen, checks)
    trainer_config = _trainer_config(hyperparameters, items_uri, vertex_training)
    hp = HParams.from_overrides(hyperparameters)
    candidate_trainer, refit_trainer = _training(transform, checks, trainer_config, bool(vertex_training), hp)
    last_blessed, evaluator = _evaluation(
        example_gen, candidate_trainer, refit_trainer, trainer_config, pipeline_name, max_regression
    )
    pushed_trainer = refit_trainer or candidate_trainer
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[
            example_gen,
            *checks.components(),
            transform,
            candidate_trainer,
            *([refit_trainer] if refit_trainer else []),
            last_blessed,
            evaluator,
            _push(pushed_trainer, evaluator, serving_model_dir),
        ],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )


@dataclasses.dataclass
class _DataChecks:
    """The components between ExampleGen and Transform, in the order the pipeline lists them."""

    previous_statistics: tfx.dsl.Resolver
    statistics_gen: tfx.components.StatisticsGen
    drift_check: drift.DriftCheck
    drift_gate: drift.DriftGate
    schema_gen: validation.ContractSchemaGen
    example_validator: tfx.components.ExampleValidator
    gate: validation.AnomaliesGate

    def components(self) -> list:
        return [getattr(self, field.name) for field in dataclasses.fields(self)]


def _data_checks(example_gen, drift_thresholds: dict | None, stop_on_drift: bool) -> _DataChecks:
    """Statistics, the drift against the previous run's statistics, and validation against the contract's
    schema (anomalies stop the run)."""
    # The previous run's statistics: resolved before this run's StatisticsGen writes its own.
    previous_statistics = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
        # StatisticsGen's (runs from before Transform's statistics were off have both)
        statistics=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ExampleStatistics,
            producer_component_id="StatisticsGen",
            output_key="statistics",
        ),
    ).with_id("previous_statistics")
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    statistics_gen.add_upstream_node(previous_statistics)
    drift_check = drift.DriftCheck(
        statistics=statistics_gen.outputs["statistics"],
        previous_statistics=previous_statistics.outputs["statistics"],
        thresholds=json.dumps(distances.check_thresholds(drift_thresholds or distances.DEFAULT_THRESHOLDS)),
    )
    drift_gate = drift.DriftGate(drift=drift_check.outputs["drift"], stop_on_drift=int(stop_on_drift))
    schema_gen = validation.ContractSchemaGen(code=code_fingerprint(validation, contract))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    gate = validation.AnomaliesGate(
        anomalies=example_validator.outputs["anomalies"], schema=schema_gen.outputs["schema"]
    )
    return _DataChecks(
        previous_statistics, statistics_gen, drift_check, drift_gate, schema_gen, example_validator, gate
    )


def _transform(example_gen, checks: _DataChecks) -> tfx.components.Transform:
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=checks.gate.outputs["validated_schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={"code": code_fingerprint(preprocessing, contract)},
        # no pre/post-transform statistics: nothing reads them, and StatisticsGen's must be the only ones a
        # Resolver by type finds (on Vertex it filters by type alone)
        disable_statistics=True,
    )
    transform.add_upstream_node(checks.drift_gate)  # a drift that stops the run stops it before training
    return transform


def _trainer_config(
    hyperparameters: dict | None, items_uri: str | None, vertex_training: dict | None
) -> dict:
    """The Trainers' custom_config, whose hash is the recipe the Evaluator records."""
    config = {
        "hyperparameters": hyperparameters or {},
        "items_uri": items_uri,
        "code": code_fingerprint(trainer_module, preprocessing, contract, serving),
    }
    if vertex_training:
        vertex = tfx.extensions.google_cloud_ai_platform
        config.update(
            {
                vertex.ENABLE_VERTEX_KEY: True,
                vertex.VERTEX_REGION_KEY: vertex_training["region"],
                vertex.TRAINING_ARGS_KEY: {k: v for k, v in vertex_training.items() if k != "region"},
            }
        )
    return config


def _training(transform, checks: _DataChecks, trainer_config: dict, on_vertex: bool, hp: HParams):
    """(the candidate Trainer, the RefitTrainer or None: trainer_module/refit.py says how the pushed model is
    made); on_vertex: they train on Vertex AI Training."""
    vertex = tfx.extensions.google_cloud_ai_platform
    trainer_class = vertex.Trainer if on_vertex else tfx.components.Trainer

    def trainer(train_splits: list[str], base_model=None):
        return trainer_class(
            run_fn=RUN_FN,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=checks.gate.outputs["validated_schema"],
            base_model=base_model,
            train_args=tfx.proto.TrainArgs(splits=train_splits),  # epochs are a hyperparameter
            eval_args=tfx.proto.EvalArgs(splits=["eval"]),
            custom_config=dict(trainer_config, train_splits=train_splits),
        )

    # The candidate the Evaluator judges trains without the eval split; the model pushed when it is blessed is
    # the RefitTrainer's, trained on every event from its base_model, the candidate, so the pushed model does
    # not pay for the held-out events.
    candidate_trainer = trainer(["train"]).with_id("Trainer")
    if not refit.has_refit_trainer(hp):
        return candidate_trainer, None
    refit_trainer = trainer(["train", "eval"], base_model=candidate_trainer.outputs["model"]).with_id(
        "RefitTrainer"
    )
    return candidate_trainer, refit_trainer


def _evaluation(example_gen, candidate_trainer, refit_trainer, trainer_config, pipeline_name, max_regression):
    """(the Resolver of the last blessed model, the Evaluator judging the candidate against it)."""
    last_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("last_blessed_model")
    evaluator = ranking_evaluator.RankingEvaluator(
        examples=example_gen.outputs["examples"],
        model=candidate_trainer.outputs["model"],
        refit_model=refit_trainer.outputs["model"] if refit_trainer else None,
        baseline_model=last_blessed.outputs["model"],
        baseline_blessing=last_blessed.outputs["model_blessing"],
        max_regression=max_regression,
        pipeline_name=pipeline_name,
        recipe=hashlib.sha256(json.dumps(trainer_config, sort_keys=True).encode()).hexdigest(),
        code=code_fingerprint(ranking_evaluator, evaluation, serving),
    ).with_id("Evaluator")
    return last_blessed, evaluator


def _push(pushed_trainer, evaluator, serving_model_dir: str) -> tfx.components.Pusher:
    """Pushes the given Trainer's model (the RefitTrainer's, or the candidate's when there is no refit) when
    the Evaluator blessed the candidate."""
    return tfx.components.Pusher(
        model=pushed_trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        custom_executor_spec=executor_spec.ExecutorClassSpec(pusher_executor.Executor),
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)
        ),
    )
