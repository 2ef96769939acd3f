"""The trainer's parts on their own: hyperparameters, the history bag, multi-device training, averaged
exports."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import contract
from serving import exported
from tests.tiny_model import Vocabularies
from trainer_module import hparams
from trainer_module.hparams import HParams
from trainer_module.model import TwoTowerModel, mean_history_embedding, native_bfloat16


def test_hyperparameter_overrides_and_unknown_names():
    assert HParams.from_overrides({"epochs": 2}).epochs == 2
    assert HParams.from_overrides(None) == HParams()
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['epoch'\]"):
        HParams.from_overrides({"epoch": 2})


def test_history_bag_is_the_mean_of_its_items_and_zero_when_empty():
    table = tf.keras.layers.Embedding(
        3, 2, embeddings_initializer=tf.constant_initializer([[1.0, 0.0], [0.0, 1.0], [4.0, 4.0]])
    )
    # Rows: items 0 and 1; nothing; item 2. Index 0 is a real item (the most frequent), not padding.
    history = tf.SparseTensor(
        indices=[[0, 0], [0, 1], [2, 0]], values=tf.constant([0, 1, 2], tf.int64), dense_shape=[3, 2]
    )
    np.testing.assert_allclose(
        mean_history_embedding(table, history).numpy(), [[0.5, 0.5], [0.0, 0.0], [4.0, 4.0]]
    )


def test_query_is_the_user_plus_the_candidate_embeddings_of_the_history_weighted_by_who_asks():
    hp = HParams(embedding_dim=8, rating_weight=0.0, known_user_history_weight=0.25)
    model = TwoTowerModel(hp, 11, 21, 5, np.ones(21), np.arange(21) % 5)
    model.compute_loss(_batch(4))  # builds the layers
    rng = np.random.default_rng(0)
    items, user = rng.normal(size=(21, 8)).astype("float32"), rng.normal(size=8).astype("float32")
    model.candidate_tower.item_embedding.set_weights([items])
    model.query_tower.user_embedding.set_weights([np.tile(user, (11, 1))])
    # Known user 0 and the new-user bucket (10), both with items 3 and 5 as history.
    history = tf.sparse.from_dense(tf.constant([[3, 5], [3, 5]], tf.int64))
    queries = model.query_tower(tf.constant([0, 10]), history).numpy()
    mean = (items[3] + items[5]) / 2
    for query, weight in zip(queries, [0.25, 1.0]):
        np.testing.assert_allclose(
            query, (user + weight * mean) / np.linalg.norm(user + weight * mean), rtol=1e-5
        )


MIRRORED = textwrap.dedent("""
    import os
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainer_module.hparams import HParams
    from trainer_module.model import TwoTowerModel
    from trainer_module.task import training_strategy
    import contract

    strategy = training_strategy([d.name for d in tf.config.list_logical_devices("CPU")])
    assert isinstance(strategy, tf.distribute.MirroredStrategy) and strategy.num_replicas_in_sync == 2
    n = 256
    rng = np.random.default_rng(0)
    history = tf.sparse.from_dense(tf.constant(rng.integers(0, 20, (n, 3)), tf.int64))
    data = tf.data.Dataset.from_tensor_slices({
        contract.USER_IDX: rng.integers(0, 10, n), contract.ITEM_IDX: rng.integers(0, 20, n),
        contract.CATEGORY_IDX: rng.integers(0, 4, n), contract.HISTORY_IDX: history,
        contract.RATING: rng.uniform(1, 5, n).astype("float32"),
        contract.RATING_WEIGHT: np.ones(n, "float32")}).batch(32)
    with strategy.scope():
        model = TwoTowerModel(HParams(embedding_dim=8), 11, 21, 5, np.ones(21), np.arange(21) % 5)
        model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    losses = model.fit(data, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    print("replicas", strategy.num_replicas_in_sync, "losses", losses)
""")


def test_mirrored_strategy_trains_on_two_logical_devices():
    # A fresh process: logical devices must be configured before TensorFlow initializes.
    result = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2" in result.stdout


def _batch(n: int, seed: int = 0, rated: bool = False) -> dict:
    """Transformed features of n random events over 10 users, 20 items, 4 categories."""
    rng = np.random.default_rng(seed)
    return {
        contract.USER_IDX: tf.constant(rng.integers(0, 10, n)),
        contract.ITEM_IDX: tf.constant(rng.integers(0, 20, n)),
        contract.CATEGORY_IDX: tf.constant(rng.integers(0, 4, n)),
        contract.HISTORY_IDX: tf.sparse.from_dense(tf.constant(rng.integers(1, 20, (n, 3)), tf.int64)),
        contract.RATING: tf.constant(rng.uniform(1, 5, n) if rated else np.zeros(n), tf.float32),
        contract.RATING_WEIGHT: tf.constant(np.ones(n) if rated else np.zeros(n), tf.float32),
    }


def test_autograph_leaves_keras_own_functions_unconverted_and_converts_the_models():
    from tensorflow.python.autograph.impl import conversion

    # Converting Keras's functions was most of the first epoch in every Trainer process.
    assert conversion.is_allowlisted(tf.keras.layers.Embedding.call)
    assert conversion.is_allowlisted(tf.keras.Model.train_step)
    assert not conversion.is_allowlisted(TwoTowerModel.compute_loss)


def test_model_trains_without_the_rating_head():
    data = tf.data.Dataset.from_tensor_slices(_batch(64)).batch(16)
    model = TwoTowerModel(
        HParams(embedding_dim=8, rating_weight=0.0), 11, 21, 5, np.ones(21), np.arange(21) % 5
    )
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    assert np.isfinite(model.fit(data, epochs=1, verbose=0).history["loss"][-1])


@pytest.mark.parametrize("item_bias", [False, True])
def test_all_items_negatives_is_the_exact_softmax_over_the_catalog(item_bias):
    hp = HParams(
        embedding_dim=8,
        rating_weight=0.0,
        negatives="all_items",
        temperature=0.5,
        item_bias=item_bias,
        bfloat16_softmax=False,  # the float32 math; the bfloat16 test below compares the two
    )
    categories = np.arange(21) % 5
    model = TwoTowerModel(hp, 11, 21, 5, np.ones(21), categories)
    batch = _batch(16)
    model.compute_loss(batch)  # builds the layers
    bias = np.linspace(-1, 1, 21)[:, np.newaxis] if item_bias else np.zeros((21, 1))
    model.item_bias.set_weights([bias])
    query = model.query_tower(batch[contract.USER_IDX], batch[contract.HISTORY_IDX]).numpy()
    catalog = model.candidate_tower(tf.range(21), tf.constant(categories)).numpy()
    logits = query @ catalog.T / hp.temperature + bias.T
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -log_softmax[np.arange(16), batch[contract.ITEM_IDX].numpy()].sum()
    np.testing.assert_allclose(model.compute_loss(batch).numpy(), expected, rtol=1e-4)


def test_sampled_negatives_are_the_softmax_over_the_target_and_the_drawn_items_logq_corrected():
    hp = HParams(
        embedding_dim=8,
        rating_weight=0.0,
        negatives="sampled",
        sampled_negatives=4,
        temperature=0.5,
        bfloat16_softmax=False,  # the float32 math; the bfloat16 test below compares the two
    )
    counts, categories = np.arange(21), np.arange(21) % 5
    model = TwoTowerModel(hp, 11, 21, 5, counts, categories)
    batch = _batch(16)
    model.compute_loss(batch)  # builds the layers
    bias = np.linspace(-1, 1, 21)
    model.item_bias.set_weights([bias[:, np.newaxis]])
    query = model.query_tower(batch[contract.USER_IDX], batch[contract.HISTORY_IDX])
    candidate = model.candidate_tower(batch[contract.ITEM_IDX], batch[contract.CATEGORY_IDX])
    targets = batch[contract.ITEM_IDX].numpy()
    negatives = np.array([targets[0], 3, 3, 20])  # the first event's own target, and an item drawn twice
    catalog = model.candidate_tower(tf.range(21), tf.constant(categories)).numpy()
    log_q = np.log(4 * (counts + 1) / (counts + 1).sum())
    target = (query.numpy() * candidate.numpy()).sum(1) / 0.5 + bias[targets] - log_q[targets]
    others = query.numpy() @ catalog[negatives].T / 0.5 + bias[negatives] - log_q[negatives]
    others[targets[:, np.newaxis] == negatives] = -np.inf
    logits = np.concatenate([target[:, np.newaxis], others], 1)
    expected = -(target - np.log(np.exp(logits).sum(1))).sum()
    loss = model.sampled_softmax(query, candidate, batch[contract.ITEM_IDX], tf.constant(negatives))
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-4)


def test_sampled_negatives_are_drawn_by_popularity():
    counts = np.array([0, 9, 29, 59])
    hp = HParams(embedding_dim=4, negatives="sampled", sampled_negatives=100_000)
    drawn = TwoTowerModel(hp, 3, 4, 2, counts, np.zeros(4)).draw_negatives().numpy()
    np.testing.assert_allclose(np.bincount(drawn, minlength=4) / drawn.size, (counts + 1) / 101, atol=0.01)


def _seeded_model_and_loss(batch, num_items: int, **overrides) -> tuple[TwoTowerModel, np.ndarray]:
    """A small model with these hyperparameters, seeded (the same weights and draws every call), and its loss
    on the batch."""
    tf.keras.utils.set_random_seed(0)
    hp = HParams(embedding_dim=8, rating_weight=0.0, **overrides)
    model = TwoTowerModel(hp, 11, num_items, 5, np.ones(num_items), np.arange(num_items) % 5)
    return model, model.compute_loss(batch).numpy()


@pytest.mark.skipif(not native_bfloat16(), reason="this machine has no native bfloat16: float32 is kept")
@pytest.mark.parametrize("negatives", ["all_items", "sampled"])
def test_the_bfloat16_softmax_gives_the_float32_loss_to_bfloat16_precision(negatives):
    losses = [
        _seeded_model_and_loss(
            _batch(16), 21, bfloat16_softmax=bfloat16, negatives=negatives, sampled_negatives=8
        )[1]
        for bfloat16 in (False, True)
    ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-2)  # bfloat16 keeps 8 bits of the mantissa
    assert losses[1] != losses[0]  # but the matmul did run in bfloat16


def test_a_warm_started_refit_starts_from_the_candidates_weights_and_optimizer_state(tmp_path):
    from trainer_module import refit
    from trainer_module.model import compiled_model

    hp = HParams(embedding_dim=8, rating_weight=0.0, refit="warm_start", refit_epochs=3)
    data = tf.data.Dataset.from_tensor_slices(_batch(64)).batch(16)
    candidate = compiled_model(hp, np.ones(21), 11, 21, 5, np.arange(21) % 5)
    candidate.fit(data, epochs=1, verbose=0)
    candidate_dir = str(tmp_path / "model" / "Format-Serving")
    refit.after_candidate(candidate, hp, candidate_dir)

    warm = compiled_model(hp, np.ones(21), 11, 21, 5, np.arange(21) % 5)
    assert refit.refit_epochs(warm, hp, candidate_dir) == 3
    warm.compute_loss(_batch(4))  # creates the variables: the candidate's values are restored into them
    for name in ("user_embedding", "item_embedding"):
        layer = getattr(warm.query_tower, name)
        np.testing.assert_array_equal(
            layer.get_weights()[0], getattr(candidate.query_tower, name).get_weights()[0]
        )
    np.testing.assert_array_equal(warm.item_bias.get_weights()[0], candidate.item_bias.get_weights()[0])
    warm.fit(data, epochs=1, verbose=0)
    assert (
        warm.optimizer.iterations.numpy() == 2 * candidate.optimizer.iterations.numpy()
    )  # its state went on

    full = HParams(embedding_dim=8, rating_weight=0.0, refit="full")
    fresh = compiled_model(full, np.ones(21), 11, 21, 5, np.arange(21) % 5)
    assert refit.refit_epochs(fresh, full, candidate_dir) == full.epochs
    fresh.compute_loss(_batch(4))
    assert not np.array_equal(fresh.item_bias.get_weights()[0], candidate.item_bias.get_weights()[0])


@pytest.mark.parametrize(
    "num_items, sampled_negatives, negatives",
    [(21, 11, "all_items"), (21, 5, "sampled"), (22, 5, "in_batch")],
)
def test_auto_negatives_are_exact_on_small_catalogs_sampled_on_medium_ones_and_in_batch_above(
    monkeypatch, num_items, sampled_negatives, negatives
):
    monkeypatch.setattr(hparams, "SAMPLED_SOFTMAX_MAX_ITEMS", 21)
    assert HParams().negatives == "auto"
    # exact up to 2 x sampled_negatives items, sampled up to SAMPLED_SOFTMAX_MAX_ITEMS, in-batch above
    assert HParams(sampled_negatives=sampled_negatives).negatives_for(num_items) == negatives
    assert HParams(negatives="all_items").negatives_for(10**7) == "all_items"
    batch = _batch(16)
    losses = []
    for asked in ("auto", negatives):
        model, loss = _seeded_model_and_loss(
            batch, num_items, negatives=asked, sampled_negatives=sampled_negatives, user_id_dropout=0.0
        )
        assert model.negatives == negatives
        losses.append(loss)
    assert losses[0] == losses[1]  # the same loss: "auto" trains as the mode it resolved to


@pytest.mark.parametrize("dropout, same", [(1.0, True), (0.0, False)])
def test_history_dropout_leaves_the_history_out_of_training_queries(dropout, same):
    hp = HParams(embedding_dim=8, rating_weight=0.0, user_id_dropout=0.0, history_dropout=dropout)
    model = TwoTowerModel(hp, 11, 21, 5, np.ones(21), np.arange(21) % 5)
    batch, other_history = _batch(16), _batch(16, seed=1)[contract.HISTORY_IDX]
    losses = [
        model.compute_loss(batch, training=True).numpy(),
        model.compute_loss(batch | {contract.HISTORY_IDX: other_history}, training=True).numpy(),
    ]
    assert bool(losses[0] == pytest.approx(losses[1])) is same


def _ragged_history_batch(n: int) -> dict:
    """_batch(n) with histories of 0 to 3 items, as the Transform output has them (a SparseTensor)."""
    batch = _batch(n)
    lengths = np.arange(n) % 4
    dense = np.where(
        np.arange(3) < lengths[:, np.newaxis], batch[contract.HISTORY_IDX].values.numpy().reshape(n, 3), -1
    )
    shifted = tf.sparse.from_dense(tf.constant(dense + 1))  # from_dense leaves out the zeros: the padding
    return batch | {
        contract.HISTORY_IDX: tf.SparseTensor(shifted.indices, shifted.values - 1, shifted.dense_shape)
    }


def test_a_dense_history_padded_with_minus_one_trains_as_the_sparse_one():
    from trainer_module.model import dense_history

    hp = HParams(embedding_dim=8, rating_weight=0.0, history_dropout=0.5, user_id_dropout=0.2)
    model = TwoTowerModel(hp, 11, 21, 5, np.ones(21), np.arange(21) % 5)
    sparse = _ragged_history_batch(16)
    dense = sparse | {contract.HISTORY_IDX: dense_history(sparse[contract.HISTORY_IDX])}
    assert (dense[contract.HISTORY_IDX].numpy() == -1).any()  # the padding is there to be ignored
    for training in (False, True):
        losses = []
        for batch in (sparse, dense):
            tf.random.set_seed(3)  # the same dropout draws for both
            losses.append(model.compute_loss(batch, training=training).numpy())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)


class _FakeAccessor:
    """The Trainer's data accessor over in-memory events: TFXIO's batching, without files."""

    def __init__(self, events: dict):
        self.events = events

    def tf_dataset_factory(self, files, options, schema):
        return tf.data.Dataset.from_tensor_slices(self.events).batch(options.batch_size)


def _in_arrival_order(events: dict, order) -> dict:
    """The events as files would deliver them in another order: every tensor's rows permuted by `order`."""
    history = tf.gather(tf.sparse.to_dense(events[contract.HISTORY_IDX], default_value=-1), order)
    shifted = tf.sparse.from_dense(history + 1)  # from_dense leaves out the zeros: the padding
    permuted = {
        name: tf.gather(values, order) for name, values in events.items() if name != contract.HISTORY_IDX
    }
    return permuted | {
        contract.HISTORY_IDX: tf.SparseTensor(shifted.indices, shifted.values - 1, shifted.dense_shape)
    }


def test_the_training_events_are_read_once_and_each_epoch_is_every_event_in_a_new_order(monkeypatch):
    from types import SimpleNamespace

    from trainer_module import task

    events = _ragged_history_batch(50)
    transform_output = SimpleNamespace(transformed_metadata=SimpleNamespace(schema=None))
    in_memory = task.read_in_memory(
        SimpleNamespace(data_accessor=_FakeAccessor(events)), ["train"], transform_output
    )
    # Every event once, the history dense (padded with -1), whatever order the files' records arrive in: the
    # seeded shuffle below then starts from the same order on every run.
    dense = tf.sparse.to_dense(events[contract.HISTORY_IDX], default_value=-1).numpy()
    assert sorted(map(tuple, in_memory[contract.HISTORY_IDX].numpy())) == sorted(map(tuple, dense))
    shuffled = _in_arrival_order(events, np.random.default_rng(0).permutation(50))
    fn_args = SimpleNamespace(data_accessor=_FakeAccessor(shuffled))
    again = task.read_in_memory(fn_args, ["train"], transform_output)
    for name, values in in_memory.items():
        np.testing.assert_array_equal(values.numpy(), again[name].numpy())
    # One endless iterator serves every epoch (as the Trainer fits): each epoch is every event once, in a new
    # order.
    dataset = task.in_memory_batches(in_memory, batch_size=16, shuffle=True, seed=1, repeat=True)
    steps = task.steps_per_epoch(in_memory, 16)
    batches = [b[contract.ITEM_IDX].numpy() for b in dataset.take(2 * steps)]
    epochs = [batches[:steps], batches[steps:]]
    assert [len(b) for b in epochs[0]] == [len(b) for b in epochs[1]] == [16, 16, 16, 2]
    orders = [np.concatenate(epoch) for epoch in epochs]
    for order in orders:
        assert sorted(order) == sorted(events[contract.ITEM_IDX].numpy())
    assert not np.array_equal(orders[0], orders[1])
    # Without tf.data's autotuning thread, which the iterator's teardown at the end of fit waited for
    # (benchmarks/fit_overheads.py).
    assert dataset.options().autotune.enabled is False
    # More events than fit: None, and the Trainer reads the files every epoch instead.
    monkeypatch.setattr(task, "IN_MEMORY_EVENTS", 49)
    assert task.read_in_memory(fn_args, ["train"], transform_output) is None


USERS, ITEMS = ["u0", "u1", "u2"], np.array(["i0", "i1", "i2", "i3", "i4", "i5"])


def _exported(path: str, seed: int, item_ids=ITEMS):
    """A random model of USERS x ITEMS exported as the Trainer exports (brute force), and loaded back."""
    from trainer_module.model import QueryTower

    rng = np.random.default_rng(seed)
    item_embedding = tf.keras.layers.Embedding(len(ITEMS) + 1, 4)
    tower = QueryTower(len(USERS) + 1, item_embedding, 0.25)
    tower(
        tf.constant([0]), tf.sparse.from_dense(tf.constant([[1]], tf.int64))
    )  # builds the weights (int32, one wide)
    tower.user_embedding.set_weights([rng.normal(size=(len(USERS) + 1, 4))])
    items = rng.normal(size=(len(ITEMS), 4)).astype(np.float32)
    item_embedding.set_weights([np.vstack([items, np.zeros((1, 4))])])
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    parts = (tower, items, rng.normal(size=len(ITEMS)).astype(np.float32))
    return parts, _save(path, parts, item_ids)


def _save(path, parts, item_ids=ITEMS):
    from trainer_module import export

    hp = HParams()
    module = export.ServingModule(
        Vocabularies(USERS, list(ITEMS)),
        *parts[:1],
        item_ids,
        *parts[1:],
        export.brute_force_index(hp, len(item_ids)),
        hp,
    )
    module.save(path)
    return exported.load(path)


def _scores(model, method: str, inputs: dict) -> list[dict]:
    out = model.signatures[method](**{name: tf.constant(value) for name, value in inputs.items()})
    return [
        {i: v for i, v in zip(ids.astype(str), s) if np.isfinite(v)}  # an excluded item scores -inf
        for ids, s in zip(out["item_ids"].numpy(), out["scores"].numpy())
    ]


def test_an_averaged_model_scores_the_mean_of_its_models_scores_for_users_and_items(tmp_path):
    from trainer_module import refit

    refitted, refit_loaded = _exported(str(tmp_path / "refit"), seed=1)
    _, candidate_loaded = _exported(str(tmp_path / "candidate"), seed=2)
    # Two 4-dimensional models side by side: 8 dimensions, of which 6 items span only 6; projected onto those.
    averaged = _save(
        str(tmp_path / "averaged"),
        refit.averaged([refitted, refit.exported_model(str(tmp_path / "candidate"), ITEMS)], dim=len(ITEMS)),
    )
    assert averaged.index.candidates.shape == (len(ITEMS), len(ITEMS) + 1)  # + the offset
    queries = dict(
        user_id=["u0", "u2", "new"],
        history=[["i1", "i2"], ["", ""], ["i3", "i4"]],
        exclude_item_ids=[["i5"], ["i5"], ["i0"]],
    )
    for method, inputs in (("serving_default", queries), ("similar_items", dict(item_id=["i0", "i3"]))):
        for mean, one, other in zip(
            *(_scores(m, method, inputs) for m in (averaged, refit_loaded, candidate_loaded))
        ):
            assert set(mean) == set(one) == set(other) and len(mean) == 5  # one item left out in each query
            assert [one[i] for i in mean] != pytest.approx([other[i] for i in mean], abs=0.01)  # two models
            for item, score in mean.items():
                assert score == pytest.approx((one[item] + other[item]) / 2, abs=1e-5), (method, item)


def test_a_model_of_another_vocabulary_is_not_averaged_in(tmp_path):
    from trainer_module import refit

    _exported(str(tmp_path / "candidate"), seed=2, item_ids=ITEMS[::-1])
    with pytest.raises(ValueError, match="not this model's items"):
        refit.exported_model(str(tmp_path / "candidate"), ITEMS)


def test_the_loss_is_reported_per_example_so_training_and_validation_compare():
    model = TwoTowerModel(
        HParams(embedding_dim=8, rating_weight=0.0), 11, 21, 5, np.ones(21), np.arange(21) % 5
    )
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    validation = tf.data.Dataset.from_tensor_slices(_batch(64, seed=1)).batch(64)
    summed = float(model.compute_loss(next(iter(validation))))  # what the gradient is taken of
    assert model.evaluate(validation, return_dict=True, verbose=0) == pytest.approx({"loss": summed / 64})
    training = tf.data.Dataset.from_tensor_slices(_batch(256)).batch(128)
    history = model.fit(training, validation_data=validation, epochs=2, verbose=0).history
    assert set(history) == {"loss", "val_loss"}  # no regularization_loss or total_loss lines
