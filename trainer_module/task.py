"""run_fn: the TFX Trainer entry point. Trains the two-tower model, exports both SavedModels, checks them."""

import csv
import json
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

import contract
from serving import exported
from trainer_module import export
from trainer_module.hparams import HParams
from trainer_module.model import TwoTowerModel


class ExportCheckError(RuntimeError):
    """The exported SavedModels load but fail a check: the model must not be pushed."""


def training_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy over the given devices (default: the GPUs, one replica each) when there are any,
    else the default strategy."""
    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    return tf.distribute.MirroredStrategy(devices) if devices else tf.distribute.get_strategy()


# ExampleGen writes each user's events together: a buffer of TFXIO's default 10,000 events fills batches
# with a few dozen users at a time, which trained a worse model than fully shuffled events
# (docs/experiments.md). 100,000 transformed events take a few tens of MB.
SHUFFLE_BUFFER = 100_000


def _dataset(fn_args, files, tf_transform_output, batch_size, shuffle: bool, seed: int):
    return fn_args.data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size,
            num_epochs=1,
            shuffle=shuffle,
            shuffle_buffer_size=SHUFFLE_BUFFER,
            shuffle_seed=seed,
        ),
        tf_transform_output.transformed_metadata.schema,
    )


def item_statistics(dataset, num_items: int):
    """Events per item index and each item's most frequent category index, from one pass over the data."""
    pairs = np.concatenate(
        [np.stack([b[contract.ITEM_IDX].numpy(), b[contract.CATEGORY_IDX].numpy()], 1) for b in dataset]
    )
    counts = np.bincount(pairs[:, 0], minlength=num_items)
    categories = np.zeros(num_items, np.int64)
    uniq, n = np.unique(pairs, axis=0, return_counts=True)
    for (item, category), _ in sorted(zip(map(tuple, uniq), n), key=lambda t: t[1]):
        categories[item] = category  # ascending count: the most frequent pair is written last
    return counts, categories


def _read_catalog(items_uri):
    if not items_uri:
        return {}
    with tf.io.gfile.GFile(items_uri) as fh:
        return {r[contract.ITEM_ID]: (r[contract.TITLE], r[contract.CATEGORY]) for r in csv.DictReader(fh)}


def _sample_queries(dataset, n: int, tf_transform_output):
    """Raw (user_id, history) queries taken from real events, mapped back through the vocabularies."""
    users = np.array(tf_transform_output.vocabulary_by_name(contract.USER_VOCAB) + [b""]).astype(str)
    items = np.array(tf_transform_output.vocabulary_by_name(contract.ITEM_VOCAB) + [b""]).astype(str)
    batch = next(iter(dataset.unbatch().batch(n)))
    history = tf.sparse.to_dense(batch[contract.HISTORY_IDX], default_value=len(items) - 1).numpy()
    return users[batch[contract.USER_IDX].numpy()].tolist(), items[history].tolist()


def run_fn(fn_args: tfx.components.FnArgs):
    hp = HParams.from_overrides(fn_args.custom_config.get("hyperparameters"))
    tf.keras.utils.set_random_seed(hp.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    num_users = tf_transform_output.vocabulary_size_by_name(contract.USER_VOCAB) + contract.NUM_OOV_BUCKETS
    num_items = tf_transform_output.vocabulary_size_by_name(contract.ITEM_VOCAB) + contract.NUM_OOV_BUCKETS
    num_categories = (
        tf_transform_output.vocabulary_size_by_name(contract.CATEGORY_VOCAB) + contract.NUM_OOV_BUCKETS
    )

    train = _dataset(fn_args, fn_args.train_files, tf_transform_output, hp.batch_size, True, hp.seed)
    evaluation = _dataset(fn_args, fn_args.eval_files, tf_transform_output, hp.batch_size, False, hp.seed)
    counts, categories = item_statistics(
        _dataset(fn_args, fn_args.train_files, tf_transform_output, 8192, False, hp.seed), num_items
    )

    strategy = training_strategy()
    logging.info("Training on %d replica(s) with %s", strategy.num_replicas_in_sync, hp)
    with strategy.scope():
        model = TwoTowerModel(hp, num_users, num_items, num_categories, counts, categories)
        model.compile(optimizer=tf.keras.optimizers.Adagrad(hp.learning_rate))
    started = time.time()
    history = model.fit(train, epochs=hp.epochs, validation_data=evaluation, verbose=2)
    train_seconds = time.time() - started

    # Candidates: every item of the vocabulary (the OOV bucket is not a candidate).
    item_ids = np.array(tf_transform_output.vocabulary_by_name(contract.ITEM_VOCAB)).astype(str)
    category_names = np.array(tf_transform_output.vocabulary_by_name(contract.CATEGORY_VOCAB) + [b""]).astype(
        str
    )
    item_index = np.arange(len(item_ids))
    item_embeddings = model.candidate_tower(
        tf.constant(item_index), tf.constant(categories[item_index])
    ).numpy()
    item_offsets = hp.temperature * model.item_bias(tf.constant(item_index)).numpy()[:, 0]

    query_tower, averaged_with = model.query_tower, None
    if (
        fn_args.base_model
    ):  # the refit: it serves the mean of its scores and the candidate's (export.averaged)
        query_tower, item_embeddings, item_offsets = export.averaged(
            [
                (model.query_tower, item_embeddings, item_offsets),
                export.exported_model(fn_args.base_model, item_ids),
            ],
            hp.embedding_dim,
        )
        averaged_with = {
            "model_dir": fn_args.base_model,
            "train_splits": exported.read_report(fn_args.base_model)["train_splits"],
        }

    tft_layer = tf_transform_output.transform_features_layer()
    model_dir = fn_args.serving_model_dir
    brute_force = export.ServingModule(
        tft_layer,
        query_tower,
        item_ids,
        item_embeddings,
        item_offsets,
        export.brute_force_index(hp, len(item_ids)),
        hp,
    )
    brute_force.save(model_dir)
    scann = export.ServingModule(
        tft_layer,
        query_tower,
        item_ids,
        item_embeddings,
        item_offsets,
        export.scann_index(hp, len(item_ids)),
        hp,
    )
    scann.save(
        os.path.join(model_dir, contract.SCANN_DIR),
        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]),
    )
    tf.io.gfile.makedirs(os.path.join(model_dir, contract.EXTRA_DIR))
    export.write_items(
        os.path.join(model_dir, contract.EXTRA_DIR, contract.ITEMS_FILE),
        item_ids,
        category_names[categories[item_index]],
        counts[item_index],
        _read_catalog(fn_args.custom_config.get("items_uri")),
    )

    # Fresh loads of both SavedModels: a model whose signatures do not load fails here and is never pushed.
    users, histories = _sample_queries(evaluation, hp.scann_check_queries, tf_transform_output)
    recall = export.recall_against_exact(model_dir, users, histories)
    num_models = 2 if averaged_with else 1
    sizes = (num_users - contract.NUM_OOV_BUCKETS, len(item_ids), hp.embedding_dim, num_models)
    export.write_report(
        model_dir,
        {
            "scann_recall_at_10_vs_exact": recall,
            "scann_check_queries": len(users),
            "num_items": len(item_ids),
            "num_users": num_users - contract.NUM_OOV_BUCKETS,
            # One loaded version of the brute-force SavedModel: what TF Serving holds per version
            # (docs/deployment.md, sizing).
            "serving": {
                "num_models": num_models,
                "variable_bytes": export.variable_bytes(*sizes),
                "memory_bytes": export.serving_memory(*sizes),
            },
            "train_splits": fn_args.custom_config["train_splits"],
            "averaged_with": averaged_with,
            "train_seconds": round(train_seconds, 1),
            "final_loss": float(history.history["loss"][-1]),
            "final_val_loss": float(history.history["val_loss"][-1]),
            "replicas": strategy.num_replicas_in_sync,
            "hyperparameters": json.loads(json.dumps(hp.__dict__)),
        },
    )
    logging.info("Exported to %s; ScaNN recall@10 vs exact: %.3f", model_dir, recall)
    if recall < hp.min_scann_recall:  # the Trainer fails, so the Pusher never sees this model
        raise ExportCheckError(
            f"ScaNN recall@10 against exact search is {recall:.3f}, below the "
            f"min_scann_recall of {hp.min_scann_recall}: not pushing this model"
        )
