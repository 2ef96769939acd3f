"""The pipeline's Evaluator: ranking quality on the eval split, and the blessing the Pusher requires.

For each user of the eval split: the full ranking the trained model gives (through its serving signature,
as the API asks it: the user's latest training items as history, all their training items left out),
against most popular and EASE computed on the same split (tfx_pipeline/evaluation.py), and against the
last blessed model when there is one. The model is blessed only if it beats most popular and is at most
`max_regression` below the last blessed model. The blessing goes to the refit model too (the same recipe
trained on every event and averaged with the candidate, the one pushed), which is also scored on the eval split
as a check that it works: it trained on those events, so it only has to beat most popular there. The report is
written into the blessing as evaluation.json; the Pusher ships it inside the pushed version (assets.extra/),
where the API's model page reads it.

Not TFX's stock Evaluator: TFMA scores examples one by one and has no full-catalog ranking metrics.
"""

import json
import os
from collections import defaultdict

import numpy as np
from absl import logging
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from tfx_pipeline import evaluation
from trainer_module import export
from transform import features as f

MAX_USERS = 10_000  # users evaluated per run (a seeded sample beyond that): minutes, not hours, at scale
_COLUMNS = {f.USER_ID: tf.io.FixedLenFeature([], tf.string), f.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
            f.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)}


def read_split(examples: tfx.types.standard_artifacts.Examples, split: str) -> dict[str, list[str]]:
    """Each user's items in one split of ExampleGen's output, oldest first."""
    files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*"))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8192).map(
        lambda batch: tf.io.parse_example(batch, _COLUMNS))
    rows = []
    for batch in dataset:
        rows.extend(zip(batch[f.USER_ID].numpy().astype(str), batch[f.TIMESTAMP].numpy(),
                        batch[f.ITEM_ID].numpy().astype(str)))
    by_user = defaultdict(list)
    for user, _, item in sorted(rows):
        by_user[user].append(item)
    return dict(by_user)


def eval_users(train: dict[str, list[str]], held_out: dict[str, list[str]], max_users: int, seed: int = 42):
    """{user: items to find}: users with training events and held-out items they had not seen in training."""
    test = {u: set(items) - set(train[u]) for u, items in held_out.items() if u in train}
    users = sorted(u for u, items in test.items() if items)
    if len(users) > max_users:
        users = sorted(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return {u: test[u] for u in users}


@tfx.dsl.components.component
def RankingEvaluator(
    examples: tfx.dsl.components.InputArtifact[standard_artifacts.Examples],
    model: tfx.dsl.components.InputArtifact[standard_artifacts.Model],
    refit_model: tfx.dsl.components.InputArtifact[standard_artifacts.Model],
    blessing: tfx.dsl.components.OutputArtifact[standard_artifacts.ModelBlessing],
    baseline_model: tfx.dsl.components.InputArtifact[standard_artifacts.Model] = None,  # none blessed yet
    max_regression: tfx.dsl.components.Parameter[float] = 0.05,
    code: tfx.dsl.components.Parameter[str] = "",  # pipeline.code_fingerprint: a code change re-runs it
):
    from proxy.embedded import EmbeddedModel  # the API's own model wrapper: evaluated as it is served

    train, held_out = read_split(examples, "train"), read_split(examples, "eval")
    test = eval_users(train, held_out, MAX_USERS)
    users_train = {u: train[u] for u in test}
    models = {"model": EmbeddedModel(path_utils.serving_model_path(model.uri)),
              evaluation.REFIT: EmbeddedModel(path_utils.serving_model_path(refit_model.uri))}
    if baseline_model is not None:
        models["baseline_model"] = EmbeddedModel(path_utils.serving_model_path(baseline_model.uri))
    results = evaluation.compare(users_train, test, models)
    blessed, reason = evaluation.bless(results, max_regression)
    logging.info("%s\n%s: %s", evaluation.report(results), "blessed" if blessed else "NOT blessed", reason)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, export.EVALUATION_FILE), "w") as out:
        json.dump({"k": evaluation.K, "blessed": blessed, "reason": reason, "max_regression": max_regression,
                   "metrics": results}, out, indent=2)
    # The properties TFX's own Evaluator sets: the Pusher and LatestBlessedModelStrategy read them.
    blessing.set_int_custom_property("blessed", int(blessed))
    blessing.set_string_custom_property("current_model", model.uri)
    blessing.set_int_custom_property("current_model_id", model.id)
    if baseline_model is not None:
        blessing.set_string_custom_property("baseline_model", baseline_model.uri)
        blessing.set_int_custom_property("baseline_model_id", baseline_model.id)
