"""run_fn: the TFX Trainer entry point. Trains the two-tower model, exports both SavedModels, checks them."""

import contextlib
import csv
import dataclasses
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
from trainer_module import export, refit
from trainer_module.hparams import HParams
from trainer_module.model import compiled_model, dense_history


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
# (docs/experiments.md). 100,000 transformed events take a few tens of MB. Only for data larger than
# IN_MEMORY_EVENTS: smaller data is shuffled whole.
SHUFFLE_BUFFER = 100_000
# Up to this many events (about 200 bytes each with a 20-item history: 400 MB) are read and parsed once, then
# batched from memory every epoch, where reading and parsing the files again each epoch took CPU from the
# training steps (benchmarks/trainer_breakdown.py).
IN_MEMORY_EVENTS = 2_000_000


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


def read_in_memory(fn_args, files, tf_transform_output) -> dict | None:
    """Every event of the files as one dict of tensors, the history dense (padded with -1); None when there
    are more than IN_MEMORY_EVENTS."""
    batches = iter(_dataset(fn_args, files, tf_transform_output, IN_MEMORY_EVENTS, False, 0))
    events = next(batches)
    if next(batches, None) is not None:
        return None
    return canonical_order(
        dict(events, **{contract.HISTORY_IDX: dense_history(events[contract.HISTORY_IDX])})
    )


def canonical_order(events: dict) -> dict:
    """The events sorted by their values, so that the seeded shuffle starts from the same order on every run:
    the order in which the files' records arrive may differ from one run to the next."""
    columns = []
    for name in sorted(events):
        values = events[name].numpy()
        columns.extend(values.reshape(values.shape[0], -1).T)
    order = np.lexsort(columns[::-1])
    return {name: tf.gather(values, order) for name, values in events.items()}


def in_memory_batches(
    events: dict, batch_size: int, shuffle: bool, seed: int, repeat: bool = False
) -> tf.data.Dataset:
    """Batches of the in-memory events, gathered by index (reshuffled every epoch when shuffle is on). With
    repeat, endless (an epoch is then steps_per_epoch(events, batch_size) batches), so that one iterator
    serves every epoch: Keras otherwise makes a new one each epoch, and each old one took seconds to tear
    down."""
    rows = tf.data.Dataset.range(events[contract.ITEM_IDX].shape[0])
    if shuffle:
        rows = rows.shuffle(events[contract.ITEM_IDX].shape[0], seed=seed)
    rows = rows.batch(batch_size)
    if repeat:
        rows = rows.repeat()

    def gather(batch):
        return {name: tf.gather(values, batch) for name, values in events.items()}

    # Without tf.data's autotuning, which has nothing to tune here: its thread sleeps up to a minute between
    # rounds, and tearing the iterator down at the end of fit waited for it (0-60 s a Trainer).
    options = tf.data.Options()
    options.autotune.enabled = False
    return rows.map(gather).prefetch(1).with_options(options)


def steps_per_epoch(events: dict, batch_size: int) -> int:
    return -(-events[contract.ITEM_IDX].shape[0] // batch_size)


def item_statistics(batches, num_items: int):
    """Events per item index and each item's most frequent category index, from one pass over the batches."""
    pairs = np.concatenate(
        [np.stack([b[contract.ITEM_IDX].numpy(), b[contract.CATEGORY_IDX].numpy()], 1) for b in batches]
    )
    counts = np.bincount(pairs[:, 0], minlength=num_items)
    categories = np.zeros(num_items, np.int64)
    uniq, n = np.unique(pairs, axis=0, return_counts=True)
    for (item, category), _ in sorted(zip(map(tuple, uniq), n, strict=True), key=lambda t: t[1]):
        categories[item] = category  # ascending count: the most frequent pair is written last
    return counts, categories


@contextlib.contextmanager
def _timed(seconds: dict, name: str):
    """Adds the block's wall time to seconds[name]: the breakdown of the Trainer's time in its report."""
    started = time.time()
    yield
    seconds[name] = round(seconds.get(name, 0.0) + time.time() - started, 1)


class EpochSeconds(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(round(time.time() - self.started, 1))


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
    history = dense_history(batch[contract.HISTORY_IDX]).numpy()
    history[history < 0] = len(items) - 1  # the padding: ""
    return users[batch[contract.USER_IDX].numpy()].tolist(), items[history].tolist()


@dataclasses.dataclass
class _Vocabularies:
    """Sizes of the Transform's vocabularies as the model's embedding tables count them (OOV buckets
    included)."""

    num_users: int
    num_items: int
    num_categories: int

    @classmethod
    def of(cls, tf_transform_output):
        def size(vocab):
            return tf_transform_output.vocabulary_size_by_name(vocab) + contract.NUM_OOV_BUCKETS

        return cls(size(contract.USER_VOCAB), size(contract.ITEM_VOCAB), size(contract.CATEGORY_VOCAB))


@dataclasses.dataclass
class _Candidates:
    """What the index serves: every item of the vocabulary (the OOV bucket is not a candidate)."""

    item_ids: np.ndarray
    categories: np.ndarray  # category index per candidate
    counts: np.ndarray  # training events per candidate
    embeddings: np.ndarray
    offsets: np.ndarray  # temperature * item bias, added to every score


def _make_deterministic(hp: HParams):
    """The same data and seed train the same model: seeded Python, NumPy and TensorFlow, the events in a fixed
    order (canonical_order), and TensorFlow's multi-threaded reductions in a fixed order. On CPU only: some
    GPU kernels have no deterministic version and would fail under it."""
    tf.keras.utils.set_random_seed(hp.seed)
    if not tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()


def _read_input(fn_args, tf_transform_output, hp: HParams, seconds: dict):
    """(training batches, their steps per epoch (None: one pass over the files), evaluation batches, the
    training events item_statistics reads): from memory when the split fits IN_MEMORY_EVENTS, else read from
    the files every epoch."""
    with _timed(seconds, "read_input"):
        train_events = read_in_memory(fn_args, fn_args.train_files, tf_transform_output)
        eval_events = read_in_memory(fn_args, fn_args.eval_files, tf_transform_output)
    if train_events is None:
        train = _dataset(fn_args, fn_args.train_files, tf_transform_output, hp.batch_size, True, hp.seed)
        steps = None
        statistics_input = _dataset(fn_args, fn_args.train_files, tf_transform_output, 8192, False, hp.seed)
    else:
        train = in_memory_batches(train_events, hp.batch_size, True, hp.seed, repeat=True)
        steps = steps_per_epoch(train_events, hp.batch_size)
        statistics_input = [train_events]
    if eval_events is None:
        evaluation = _dataset(fn_args, fn_args.eval_files, tf_transform_output, hp.batch_size, False, hp.seed)
    else:
        evaluation = in_memory_batches(eval_events, hp.batch_size, False, hp.seed)
    return train, steps, evaluation, statistics_input


def _train(
    fn_args, hp: HParams, sizes: _Vocabularies, counts, categories, train, steps, evaluation, seconds: dict
):
    """The fitted model, its Keras history, the seconds of each epoch and the strategy it trained under. The
    RefitTrainer (given a base_model) starts and trains as refit.py says."""
    strategy = training_strategy()
    logging.info("Training on %d replica(s) with %s", strategy.num_replicas_in_sync, hp)
    with strategy.scope():
        model = compiled_model(hp, counts, sizes.num_users, sizes.num_items, sizes.num_categories, categories)
    epochs = refit.refit_epochs(model, hp, fn_args.base_model) if fn_args.base_model else hp.epochs
    epoch_seconds = EpochSeconds()
    with _timed(seconds, "fit"):
        history = model.fit(
            train,
            epochs=epochs,
            steps_per_epoch=steps,
            validation_data=evaluation,
            verbose=2,
            callbacks=[epoch_seconds],
        )
    if not fn_args.base_model:
        refit.after_candidate(model, hp, fn_args.serving_model_dir)
    return model, history, epoch_seconds.seconds, strategy


def _embed_candidates(model, tf_transform_output, hp: HParams, counts, categories) -> _Candidates:
    item_ids = np.array(tf_transform_output.vocabulary_by_name(contract.ITEM_VOCAB)).astype(str)
    item_index = np.arange(len(item_ids))
    return _Candidates(
        item_ids=item_ids,
        categories=categories[item_index],
        counts=counts[item_index],
        embeddings=model.candidate_tower(
            tf.constant(item_index), tf.constant(categories[item_index])
        ).numpy(),
        offsets=hp.temperature * model.item_bias(tf.constant(item_index)).numpy()[:, 0],
    )


def _average_with_base_model(fn_args, hp: HParams, query_tower, candidates: _Candidates, seconds: dict):
    """The query tower and candidates to export, and what they were averaged with (refit.py decides; None for
    the candidate itself)."""
    if not fn_args.base_model:
        return query_tower, candidates, None
    with _timed(seconds, "average_with_base_model"):
        query_tower, embeddings, offsets, averaged_with = refit.averaged_with_candidate(
            hp,
            fn_args.base_model,
            query_tower,
            candidates.item_ids,
            candidates.embeddings,
            candidates.offsets,
        )
    return query_tower, dataclasses.replace(candidates, embeddings=embeddings, offsets=offsets), averaged_with


def _export(fn_args, hp: HParams, tf_transform_output, query_tower, candidates: _Candidates, seconds: dict):
    """Writes the brute-force SavedModel, the ScaNN one (contract.SCANN_DIR) and the items file."""
    tft_layer = tf_transform_output.transform_features_layer()
    model_dir = fn_args.serving_model_dir
    num_items = len(candidates.item_ids)

    def serving_module(index):
        return export.ServingModule(
            tft_layer, query_tower, candidates.item_ids, candidates.embeddings, candidates.offsets, index, hp
        )

    with _timed(seconds, "export_brute_force"):
        serving_module(export.brute_force_index(hp, num_items)).save(model_dir)
    with _timed(seconds, "export_scann"):
        serving_module(export.scann_index(hp, num_items)).save(
            os.path.join(model_dir, contract.SCANN_DIR),
            options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]),
        )
    category_names = np.array(tf_transform_output.vocabulary_by_name(contract.CATEGORY_VOCAB) + [b""]).astype(
        str
    )
    tf.io.gfile.makedirs(os.path.join(model_dir, contract.EXTRA_DIR))
    export.write_items(
        os.path.join(model_dir, contract.EXTRA_DIR, contract.ITEMS_FILE),
        candidates.item_ids,
        category_names[candidates.categories],
        candidates.counts,
        _read_catalog(fn_args.custom_config.get("items_uri")),
    )


def _check_export(model_dir: str, hp: HParams, evaluation, tf_transform_output, seconds: dict):
    """Fresh loads of both SavedModels, so that a model whose signatures do not load fails here and is never
    pushed: (ScaNN's recall@10 against exact search, the number of queries it was measured on)."""
    users, histories = _sample_queries(evaluation, hp.scann_check_queries, tf_transform_output)
    with _timed(seconds, "fresh_load_check"):
        recall = export.recall_against_exact(model_dir, users, histories)
    return recall, len(users)


def _serving_size(sizes: _Vocabularies, hp: HParams, num_models: int) -> dict:
    """One loaded version of the brute-force SavedModel: what TF Serving holds per version
    (docs/deployment.md, sizing)."""
    shape = (sizes.num_users - contract.NUM_OOV_BUCKETS, sizes.num_items - contract.NUM_OOV_BUCKETS)
    shape += (hp.embedding_dim, num_models)
    return {
        "num_models": num_models,
        "variable_bytes": export.variable_bytes(*shape),
        "memory_bytes": export.serving_memory(*shape),
    }


def _training_report(hp: HParams, model, seconds: dict, history, epoch_seconds: list, strategy) -> dict:
    return {
        # hyperparameters.negatives as asked ("auto" by default), this as trained (HParams.negatives_for)
        "negatives": model.negatives,
        "train_seconds": seconds["fit"],
        # Where the Trainer's time went (benchmarks/trainer_breakdown.py reads it).
        "seconds": seconds,
        "epoch_seconds": epoch_seconds,
        "final_loss": float(history.history["loss"][-1]),
        "final_val_loss": float(history.history["val_loss"][-1]),
        "replicas": strategy.num_replicas_in_sync,
        "hyperparameters": json.loads(json.dumps(hp.__dict__)),
    }


def run_fn(fn_args: tfx.components.FnArgs):
    hp = HParams.from_overrides(fn_args.custom_config.get("hyperparameters"))
    _make_deterministic(hp)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    sizes = _Vocabularies.of(tf_transform_output)
    seconds = {}
    train, steps, evaluation, statistics_input = _read_input(fn_args, tf_transform_output, hp, seconds)
    with _timed(seconds, "item_statistics"):
        counts, categories = item_statistics(statistics_input, sizes.num_items)
    model, history, epoch_seconds, strategy = _train(
        fn_args, hp, sizes, counts, categories, train, steps, evaluation, seconds
    )
    candidates = _embed_candidates(model, tf_transform_output, hp, counts, categories)
    query_tower, candidates, averaged_with = _average_with_base_model(
        fn_args, hp, model.query_tower, candidates, seconds
    )
    model_dir = fn_args.serving_model_dir
    _export(fn_args, hp, tf_transform_output, query_tower, candidates, seconds)
    recall, check_queries = _check_export(model_dir, hp, evaluation, tf_transform_output, seconds)
    report = {
        "scann_recall_at_10_vs_exact": recall,
        "scann_check_queries": check_queries,
        "num_items": len(candidates.item_ids),
        "num_users": sizes.num_users - contract.NUM_OOV_BUCKETS,
        "serving": _serving_size(sizes, hp, num_models=2 if averaged_with else 1),
        "train_splits": fn_args.custom_config["train_splits"],
        "averaged_with": averaged_with,
        "warm_started_from": refit.warm_started_from(hp, fn_args.base_model),
    }
    export.write_report(
        model_dir, dict(report, **_training_report(hp, model, seconds, history, epoch_seconds, strategy))
    )
    logging.info("Exported to %s; ScaNN recall@10 vs exact: %.3f", model_dir, recall)
    if recall < hp.min_scann_recall:  # the Trainer fails, so the Pusher never sees this model
        raise ExportCheckError(
            f"ScaNN recall@10 against exact search is {recall:.3f}, below the "
            f"min_scann_recall of {hp.min_scann_recall}: not pushing this model"
        )
