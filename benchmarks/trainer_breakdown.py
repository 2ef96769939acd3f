"""Where the Trainer's time goes, measured on the Transform output of a `recsys pipeline run` (issue 20).

Usage: nice -n 19 .venv/bin/python -m benchmarks.trainer_breakdown WORKDIR [--epochs 3] [--parts input,steps]

WORKDIR is a pipeline run's workdir (its latest Transform output is used). Parts, each a table:
- input: one pass over the train split as TFXIO reads it (read, gunzip, parse, shuffle, batch), against
  the same events read once into memory and iterated from there (sliced, or gathered by index).
- steps: the model trained one epoch at a time by several loops, alternating epoch by epoch so the
  machine's noise falls on all of them alike: Keras `model.fit` on the TFXIO dataset (what the Trainer
  did before reading into memory), `model.fit` on the events in memory sliced event by event, the same
  gathered batch by batch by shuffled indices (what the Trainer does now), that with XLA
  (`jit_compile=True`), and a bare loop (a `tf.function` step: loss, gradient, Adagrad update) on the
  same gathered batches. Epoch 1 includes tracing (and XLA's compilation); the later epochs are the
  steady state. A step against its FLOP count: the all-items softmax's logits are batch x dim x items
  multiply-adds forward and twice that backward (the gradients with respect to the queries and to the
  item vectors): 6 x batch x dim x items FLOPs; the rest of the step (towers, gathers, the Adagrad
  update) is O((batch + items) x dim). The same three matmuls alone, timed in the same run, are the
  rate this machine delivers on them.
- run_fn: the Trainer's run_fn as the pipeline calls it, for the candidate (train split) and then the refit
  (train and eval splits, averaged with the candidate), with the breakdown its export report records.
"""

import argparse
import glob
import os
import platform
import statistics
import tempfile
import time

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs  # noqa: E402
from tfx.components.util import tfxio_utils  # noqa: E402
from tfx.proto import example_gen_pb2  # noqa: E402

import contract  # noqa: E402
from serving import exported  # noqa: E402
from trainer_module import task  # noqa: E402
from trainer_module.hparams import HParams  # noqa: E402
from trainer_module.model import TwoTowerModel  # noqa: E402


def latest_transform(workdir: str) -> tuple[str, str]:
    """(transformed examples dir, transform graph dir) of the workdir's latest complete Transform run."""
    root = os.path.join(workdir, "pipeline_root", "Transform")
    runs = sorted(
        (int(name) for name in os.listdir(os.path.join(root, "transformed_examples")) if name.isdigit()),
        reverse=True,
    )
    for run in runs:
        examples = os.path.join(root, "transformed_examples", str(run))
        if glob.glob(os.path.join(examples, "Split-train", "*.gz")):
            return examples, os.path.join(root, "transform_graph", str(run))
    raise SystemExit(f"{workdir}: no Transform output; run `recsys pipeline run` there first")


def _dataset_factory(files, options, schema):
    return tfxio_utils.make_tfxio(
        file_pattern=files,
        telemetry_descriptors=["trainer_breakdown"],
        payload_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
        schema=schema,
    ).TensorFlowDataset(options)


def fn_args(workdir: str, splits: list[str], model_dir: str, hparams: dict, base_model=None) -> FnArgs:
    """The FnArgs TFX's Trainer gives run_fn for these splits of the workdir's latest Transform output."""
    examples, graph = latest_transform(workdir)
    return FnArgs(
        train_files=[os.path.join(examples, f"Split-{split}", "*") for split in splits],
        eval_files=[os.path.join(examples, "Split-eval", "*")],
        transform_output=graph,
        transform_graph_path=graph,
        serving_model_dir=model_dir,
        base_model=base_model,
        data_accessor=DataAccessor(_dataset_factory, None, None),
        custom_config={"hyperparameters": hparams, "items_uri": None, "train_splits": splits},
    )


def _seconds(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def in_memory(args: FnArgs, tft_output, hp: HParams) -> dict:
    """Every training event as one batch of tensors (the history a SparseTensor), read once."""
    return next(iter(task._dataset(args, args.train_files, tft_output, 10**9, False, hp.seed)))


def in_memory_dataset(events: dict, hp: HParams) -> tf.data.Dataset:
    n = int(events[contract.ITEM_IDX].shape[0])
    return tf.data.Dataset.from_tensor_slices(events).shuffle(n, seed=hp.seed).batch(hp.batch_size)


def part_input(args, tft_output, hp):
    rows = []
    tfxio_seconds, events = _seconds(
        lambda: sum(
            int(b[contract.ITEM_IDX].shape[0])
            for b in task._dataset(args, args.train_files, tft_output, hp.batch_size, True, hp.seed)
        )
    )
    rows.append(("TFXIO pass (read, gunzip, parse, shuffle, batch: every epoch before)", tfxio_seconds))
    read_seconds, dense = _seconds(lambda: task.read_in_memory(args, args.train_files, tft_output))
    rows.append(
        ("read once into memory (task.read_in_memory: one TFXIO batch, history made dense)", read_seconds)
    )
    memory_seconds, _ = _seconds(
        lambda: sum(1 for _ in in_memory_dataset(in_memory(args, tft_output, hp), hp))
    )
    rows.append(("pass over the in-memory events sliced one by one (shuffle, batch)", memory_seconds))
    gathered = task.in_memory_batches(dense, hp.batch_size, True, hp.seed)
    gathered_seconds, _ = _seconds(lambda: sum(1 for _ in gathered))
    rows.append(
        (
            "pass over the in-memory events, batches gathered by shuffled index (the Trainer's)",
            gathered_seconds,
        )
    )
    print(f"\n### Input pipeline: {events} training events, batch {hp.batch_size}\n")
    print("| pass | s | events/s | ratio to the TFXIO pass |\n|---|---:|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {events / seconds:,.0f} | {seconds / tfxio_seconds:.2f} |")


class _Loop:
    """One way of training the model, one epoch per call."""

    def __init__(self, name, hp, sizes, counts, categories, dataset, jit_compile=False, bare=False):
        self.name, self.dataset, self.bare, self.seconds = name, dataset, bare, []
        tf.keras.utils.set_random_seed(hp.seed)
        self.model = TwoTowerModel(hp, *sizes, counts, categories)
        self.optimizer = tf.keras.optimizers.Adagrad(hp.learning_rate)
        if bare:
            self.step = tf.function(self._step, reduce_retracing=True)  # as Keras traces its own step
        else:
            self.model.compile(optimizer=self.optimizer, jit_compile=jit_compile)

    def _step(self, batch):
        with tf.GradientTape() as tape:
            loss = self.model.compute_loss(batch, training=True)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    def epoch(self):
        started = time.perf_counter()
        if self.bare:
            for batch in self.dataset:
                loss = self.step(batch)
            self.loss = float(loss)
        else:
            self.loss = self.model.fit(self.dataset, epochs=1, verbose=0).history["loss"][-1]
        self.seconds.append(time.perf_counter() - started)


def matmul_seconds(batch: int, dim: int, items: int, dtype=tf.float32, repeats: int = 20) -> float:
    """Seconds of the step's three softmax matmuls alone (the logits, both gradients), median of repeats."""
    queries, candidates, grad_logits = (
        tf.cast(tf.random.normal(shape), dtype) for shape in ([batch, dim], [items, dim], [batch, items])
    )

    @tf.function
    def three():
        products = (
            tf.matmul(queries, candidates, transpose_b=True),
            tf.matmul(grad_logits, candidates),
            tf.matmul(grad_logits, queries, transpose_a=True),
        )
        return sum(tf.reduce_sum(tf.cast(p, tf.float32)) for p in products)

    three()
    return statistics.median(_seconds(lambda: float(three()))[0] for _ in range(repeats))


def two_tower_args(args, tft_output, hp) -> tuple:
    """What TwoTowerModel takes besides hp, as the Trainer computes it: (vocabulary sizes of users, items and
    categories, item counts, item categories)."""
    vocabularies = (contract.USER_VOCAB, contract.ITEM_VOCAB, contract.CATEGORY_VOCAB)
    sizes = tuple(tft_output.vocabulary_size_by_name(v) + contract.NUM_OOV_BUCKETS for v in vocabularies)
    counts, categories = task.item_statistics(
        task._dataset(args, args.train_files, tft_output, 8192, False, hp.seed), sizes[1]
    )
    return sizes, counts, categories


def part_steps(args, tft_output, hp, epochs):
    sizes, counts, categories = two_tower_args(args, tft_output, hp)
    num_items = sizes[1]
    data = in_memory(args, tft_output, hp)
    events = int(data[contract.ITEM_IDX].shape[0])
    memory = in_memory_dataset(data, hp)
    tfxio = task._dataset(args, args.train_files, tft_output, hp.batch_size, True, hp.seed)
    gathered = task.in_memory_batches(
        task.read_in_memory(args, args.train_files, tft_output), hp.batch_size, True, hp.seed
    )
    model_args = (hp, sizes, counts, categories)
    loops = [
        _Loop("Keras fit, TFXIO dataset (the Trainer's before)", *model_args, tfxio),
        _Loop("Keras fit, events in memory", *model_args, memory),
        _Loop("Keras fit, in memory, gathered batches (the Trainer's now)", *model_args, gathered),
        _Loop("Keras fit, in memory, gathered batches, XLA", *model_args, gathered, jit_compile=True),
        _Loop("bare loop (tf.function step), in memory, gathered batches", *model_args, gathered, bare=True),
    ]
    for epoch in range(epochs):  # alternating: every loop's epoch e runs before any loop's epoch e + 1
        for loop in loops:
            try:
                loop.epoch()
            except Exception as e:  # a loop that cannot run (XLA and an op it lacks) is reported, not fatal
                loop.seconds.append(float("nan"))
                loop.error = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        print(f"epoch {epoch + 1} s: " + ", ".join(f"{loop.seconds[-1]:.1f}" for loop in loops), flush=True)
    steps = -(-events // hp.batch_size)
    flops = 6 * hp.batch_size * hp.embedding_dim * num_items
    matmuls = matmul_seconds(hp.batch_size, hp.embedding_dim, num_items)
    bfloat16 = matmul_seconds(hp.batch_size, hp.embedding_dim, num_items, tf.bfloat16)
    bare = statistics.median(loops[-1].seconds[1:])
    print(
        f"\n### Training steps: {events} events, {steps} steps of {hp.batch_size} per epoch, "
        f"{num_items} items, dim {hp.embedding_dim}; {epochs} epochs per loop, alternating\n"
    )
    print(
        f"FLOPs per step (softmax logits forward + backward): 6 x {hp.batch_size} x {hp.embedding_dim} x "
        f"{num_items} = {flops / 1e9:.1f} GFLOP; the three matmuls alone took {matmuls * 1e3:.0f} ms "
        f"({flops / matmuls / 1e9:.0f} GFLOP/s), so {steps * matmuls:.1f} s per epoch at that rate; "
        f"in bfloat16 {bfloat16 * 1e3:.0f} ms ({bfloat16 / matmuls:.2f}x).\n"
    )
    print(
        "| loop | epoch 1 (tracing) s | later epochs s (median) | ms/step | events/s | GFLOP/s "
        "| x the bare loop | final loss |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for loop in loops:
        if hasattr(loop, "error"):
            print(f"| {loop.name} | failed: {loop.error} | | | | | | |")
            continue
        later = statistics.median(loop.seconds[1:])
        print(
            f"| {loop.name} | {loop.seconds[0]:.1f} | {later:.1f} | {later / steps * 1e3:.0f} "
            f"| {events / later:,.0f} | {steps * flops / later / 1e9:.0f} | {later / bare:.2f} "
            f"| {loop.loss:.1f} |"
        )


def part_run_fn(workdir, hparams):
    with tempfile.TemporaryDirectory() as tmp:
        candidate_dir, refit_dir = os.path.join(tmp, "candidate"), os.path.join(tmp, "refit")
        seconds = {}
        seconds["candidate"], _ = _seconds(
            lambda: task.run_fn(fn_args(workdir, ["train"], candidate_dir, hparams))
        )
        seconds["refit"], _ = _seconds(
            lambda: task.run_fn(
                fn_args(workdir, ["train", "eval"], refit_dir, hparams, base_model=candidate_dir)
            )
        )
        reports = {
            name: exported.read_report(path)
            for name, path in [("candidate", candidate_dir), ("refit", refit_dir)]
        }
    parts = sorted({part for report in reports.values() for part in report["seconds"]})
    print(f"\n### run_fn, as the pipeline calls it (hyperparameters {hparams})\n")
    print("| part | candidate s | refit s |\n|---|---:|---:|")
    for part in parts:
        print(f"| {part} | " + " | ".join(str(reports[n]["seconds"].get(part, "—")) for n in reports) + " |")
    print(
        "| epochs | " + " | ".join(", ".join(map(str, reports[n]["epoch_seconds"])) for n in reports) + " |"
    )
    print(f"| **run_fn total** | {seconds['candidate']:.1f} | {seconds['refit']:.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per loop (steps) and per run_fn")
    parser.add_argument("--parts", default="input,steps,run_fn")
    args = parser.parse_args()
    parts = args.parts.split(",")
    hp = HParams(epochs=args.epochs)
    examples, graph = latest_transform(args.workdir)
    tft_output = tft.TFTransformOutput(graph)
    train_args = fn_args(args.workdir, ["train"], "", {})
    print(
        f"Trainer breakdown of {examples}: {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    if "input" in parts:
        part_input(train_args, tft_output, hp)
    if "steps" in parts:
        part_steps(train_args, tft_output, hp, args.epochs)
    if "run_fn" in parts:
        part_run_fn(args.workdir, {"epochs": args.epochs})


if __name__ == "__main__":
    main()
