"""The pipeline's Evaluator: ranking quality on the eval split, and the blessing the Pusher requires.

For each user of the eval split: the full ranking the trained model gives (through its serving signature,
as the API asks it: the user's latest training items as history, all their training items left out),
against most popular and EASE computed on the same split (evaluation.py), and against the
last blessed model when there is one. The model is blessed only if it beats most popular and is at most
`max_regression` below the last blessed model. The blessing goes to the refit model too (the same recipe
trained on every event and averaged with the candidate, the one pushed), which is also scored on the eval
split as a check that it works: it trained on those events, so it only has to beat most popular there. The
report is written into the blessing as evaluation.json; the Pusher ships it inside the pushed version
(assets.extra/), where the API's model page reads it.

A run whose events and training recipe are those of the last blessed model is not blessed again: its model
would replace an equal one. Vertex AI Pipelines re-runs every task on each scheduled run (BigQuery's rows are
not part of any cache key), so this, not the cache, is what keeps an unchanged table from pushing a new
version.

Not TFX's stock Evaluator: TFMA scores examples one by one and has no full-catalog ranking metrics.
"""

import json
import os
from collections import defaultdict

import numpy as np
import tensorflow as tf
from absl import logging
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import path_utils

import contract
import evaluation
from serving import query
from serving.embedded import EmbeddedModel  # the serving code's model wrapper: evaluated as it is served

MAX_USERS = 10_000  # users evaluated per run (a seeded sample beyond that): minutes, not hours, at scale
# The blessing's custom properties beyond those TFX's own Evaluator sets.
PIPELINE_PROPERTY = "pipeline"  # the Vertex Resolver's query looks for blessings of this pipeline only
INPUTS_PROPERTY = "inputs_fingerprint"
_COLUMNS = {
    contract.USER_ID: tf.io.FixedLenFeature([], tf.string),
    contract.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
    contract.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
    contract.INTERACTION_TYPE: tf.io.FixedLenFeature([], tf.string),
    contract.RATING: tf.io.FixedLenFeature([], tf.float32),
    contract.CATEGORY: tf.io.FixedLenFeature([], tf.string),
}


def read_events(examples: standard_artifacts.Examples, split: str) -> list[tuple]:
    """The events of one split of ExampleGen's output as (user, timestamp, item, type, rating, category),
    sorted."""
    files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*"))
    dataset = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(8192)
        .map(lambda batch: tf.io.parse_example(batch, _COLUMNS))
    )
    rows = []
    for batch in dataset:
        rows.extend(
            zip(
                batch[contract.USER_ID].numpy().astype(str),
                batch[contract.TIMESTAMP].numpy().tolist(),
                batch[contract.ITEM_ID].numpy().astype(str),
                batch[contract.INTERACTION_TYPE].numpy().astype(str),
                batch[contract.RATING].numpy().tolist(),
                batch[contract.CATEGORY].numpy().astype(str),
            )
        )
    return sorted(rows)


def items_by_user(events: list[tuple]) -> dict[str, list[str]]:
    """Each user's items, oldest first."""
    by_user = defaultdict(list)
    for user, _, item, *_ in events:
        by_user[user].append(item)
    return dict(by_user)


def eval_users(train: dict[str, list[str]], held_out: dict[str, list[str]], max_users: int, seed: int = 42):
    """{user: items to find}: users with training events and held-out items they had not seen in training."""
    test = {u: set(items) - set(train[u]) for u, items in held_out.items() if u in train}
    users = sorted(u for u, items in test.items() if items)
    if len(users) > max_users:
        users = sorted(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return {u: test[u] for u in users}


class RankingEvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        "max_regression": ExecutionParameter(type=float),
        "pipeline_name": ExecutionParameter(type=str),
        "recipe": ExecutionParameter(type=str),  # what trains the models: their config and code, as a hash
        "code": ExecutionParameter(type=str),  # pipeline.code_fingerprint of this module: a change re-runs it
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "refit_model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),  # none blessed yet
        "baseline_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.ModelBlessing)}


class Executor(tfx_evaluator.Executor):
    """A subclass of TFX's Evaluator executor for one reason: on Vertex AI Pipelines, TFX's entrypoint
    (kubeflow_v2_run_executor) turns the blessing's model ids into the models' resource names only for those,
    and the Resolver finds the last blessed model by that name. Nothing of the parent runs."""

    def Do(self, input_dict, output_dict, exec_properties):
        def one(key):
            return artifact_utils.get_single_instance(input_dict[key]) if input_dict.get(key) else None

        examples, model, refit_model = one("examples"), one("model"), one("refit_model")
        baseline_model, baseline_blessing = one("baseline_model"), one("baseline_blessing")
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        max_regression = exec_properties["max_regression"]

        train_events, held_out_events = read_events(examples, "train"), read_events(examples, "eval")
        fingerprint = evaluation.inputs_fingerprint(train_events + held_out_events, exec_properties["recipe"])
        train, held_out = items_by_user(train_events), items_by_user(held_out_events)
        test = eval_users(train, held_out, MAX_USERS)
        users_train = {u: train[u] for u in test}
        models = {
            "model": EmbeddedModel(path_utils.serving_model_path(model.uri)),
            evaluation.REFIT: EmbeddedModel(path_utils.serving_model_path(refit_model.uri)),
        }
        if baseline_model is not None:
            models["baseline_model"] = EmbeddedModel(path_utils.serving_model_path(baseline_model.uri))
        recommended = {
            name: query.recommendations(m, users_train, evaluation.K) for name, m in models.items()
        }
        results = evaluation.compare(users_train, test, recommended)
        if (
            baseline_blessing is not None
            and baseline_blessing.get_string_custom_property(INPUTS_PROPERTY) == fingerprint
        ):
            blessed, reason = (
                False,
                "the events and the recipe are the last blessed model's: nothing new to push",
            )
        else:
            blessed, reason = evaluation.bless(results, max_regression)
        logging.info(
            "%s\n%s: %s", evaluation.report(results), "blessed" if blessed else "NOT blessed", reason
        )
        with tf.io.gfile.GFile(os.path.join(blessing.uri, contract.EVALUATION_FILE), "w") as out:
            json.dump(
                {
                    "k": evaluation.K,
                    "blessed": blessed,
                    "reason": reason,
                    "max_regression": max_regression,
                    "baseline_model": baseline_model.uri if baseline_model is not None else None,
                    INPUTS_PROPERTY: fingerprint,
                    "metrics": results,
                },
                out,
                indent=2,
            )
        # The properties TFX's own Evaluator sets (the Pusher and LatestBlessedModelStrategy read them), and
        # ours.
        blessing.set_int_custom_property("blessed", int(blessed))
        blessing.set_string_custom_property("current_model", model.uri)
        blessing.set_int_custom_property("current_model_id", model.id)
        blessing.set_string_custom_property(PIPELINE_PROPERTY, exec_properties["pipeline_name"])
        blessing.set_string_custom_property(INPUTS_PROPERTY, fingerprint)
        if baseline_model is not None:
            blessing.set_string_custom_property("baseline_model", baseline_model.uri)
            blessing.set_int_custom_property("baseline_model_id", baseline_model.id)


class RankingEvaluator(base_component.BaseComponent):
    SPEC_CLASS = RankingEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)  # the parent is a Beam executor

    def __init__(
        self,
        examples,
        model,
        refit_model,
        baseline_model,
        baseline_blessing,
        max_regression: float,
        pipeline_name: str,
        recipe: str,
        code: str,
    ):
        super().__init__(
            RankingEvaluatorSpec(
                examples=examples,
                model=model,
                refit_model=refit_model,
                baseline_model=baseline_model,
                baseline_blessing=baseline_blessing,
                max_regression=max_regression,
                pipeline_name=pipeline_name,
                recipe=recipe,
                code=code,
                blessing=channel.Channel(type=standard_artifacts.ModelBlessing),
            )
        )
