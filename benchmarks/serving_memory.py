"""Serving memory of one brute-force version, against trainer_module.export.serving_memory: exports of the
pushed model's architecture at larger sizes, each loaded in a fresh process that never imports scann (as stock
TF Serving loads the version root), its resident memory measured before and after the load and a first call.

Usage: .venv/bin/python -m benchmarks.serving_memory --workdir W [--sizes 25000x2500 100000x10000] [--dim 512]
W is a pipeline workdir (`recsys pipeline run`): its Transform graph maps the ids; its vocabularies are
replaced by ones of each size, so the lookup tables are as large as the users and items. Weights are random
(the sizes are what counts), two query towers averaged and projected, as the pushed (refit) model.
The baseline in the same run: the version the pipeline pushed, loaded the same way.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

# Runs in a fresh interpreter: TensorFlow imported and warmed up first, then the version loaded and called
# once.
MEASURE = """
import json, os, sys, time
import tensorflow as tf

def rss():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}

tf.constant([1.0]) + 1  # the runtime's own start-up allocations, before the baseline
before, started = rss(), time.perf_counter()
model = tf.saved_model.load(sys.argv[1])
loaded = time.perf_counter() - started
model.signatures["serving_default"](user_id=tf.constant(["u"]), history=tf.constant([[""]]),
                                     exclude_item_ids=tf.zeros([1, 0], tf.string))
after = rss()
print(json.dumps({"rss_growth": after["VmRSS"] - before["VmRSS"],
                  "peak_growth": after["VmHWM"] - before["VmRSS"],
                  "load_seconds": loaded, "scann_imported": "scann" in sys.modules}))
"""


def measure(version_dir: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, version_dir],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def synthetic_export(transform_dir: str, users: int, items: int, dim: int, out_dir: str):
    """A version of the pushed model's architecture with `users` and `items` (random weights), at out_dir."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft

    import contract
    from trainer_module import export
    from trainer_module.hparams import HParams
    from trainer_module.model import QueryTower

    graph = os.path.join(out_dir + ".transform")
    shutil.copytree(transform_dir, graph)
    user_ids = [f"u{n:08d}" for n in range(users)]
    item_ids = np.array([f"i{n:08d}" for n in range(items)])
    for name, ids in ((contract.USER_VOCAB, user_ids), (contract.ITEM_VOCAB, item_ids)):
        with open(os.path.join(graph, "transform_fn", "assets", name), "w") as out:
            out.write("\n".join(ids) + "\n")
    tft_output = tft.TFTransformOutput(graph)
    hp = HParams(embedding_dim=dim)
    rng = np.random.default_rng(0)
    models = []
    for _ in range(2):
        item_table = tf.keras.layers.Embedding(items + 1, dim)
        tower = QueryTower(users + 1, item_table, hp.known_user_history_weight)
        tower(
            tf.constant([0], tf.int64), tf.sparse.from_dense(tf.constant([[0]], tf.int64))
        )  # builds the tables
        vectors = rng.normal(size=(items, dim)).astype(np.float32)
        models.append(
            (
                tower,
                vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
                rng.normal(size=items).astype(np.float32),
            )
        )
    query_tower, embeddings, offsets = export.averaged(models, dim)
    export.ServingModule(
        tft_output.transform_features_layer(),
        query_tower,
        item_ids,
        embeddings,
        offsets,
        export.brute_force_index(hp, items),
        hp,
    ).save(out_dir)
    shutil.rmtree(graph)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument(
        "--sizes", nargs="+", default=["25000x2500", "100000x10000", "200000x20000"], help="USERSxITEMS"
    )
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args(argv)
    from serving import exported
    from trainer_module import export

    [transform_dir] = glob.glob(
        os.path.join(args.workdir, "**", "Transform", "transform_graph", "*"), recursive=True
    )
    pushed = sorted(glob.glob(os.path.join(args.workdir, "serving", "*", "[0-9]*")))[-1]
    report = exported.read_report(pushed)
    rows = [
        (
            "pushed",
            report["num_users"],
            report["num_items"],
            report["hyperparameters"]["embedding_dim"],
            pushed,
        )
    ]
    scratch = tempfile.mkdtemp(prefix="serving-memory-")
    try:
        for size in args.sizes:
            users, items = map(int, size.split("x"))
            out = os.path.join(scratch, size)
            started = time.perf_counter()
            synthetic_export(transform_dir, users, items, args.dim, out)
            print(f"exported {size} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            rows.append((size, users, items, args.dim, out))
        print(
            "| export | users | items | dim | variables (formula) | variables (checkpoint) | RSS growth | "
            "RSS / variables | peak growth | load s | scann imported |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, users, items, dim, path in rows:
            formula = export.variable_bytes(users, items, dim, 2)
            result = measure(path)
            mib = lambda n: f"{n / 2**20:,.0f} MiB"  # noqa: E731
            print(
                f"| {name} | {users:,} | {items:,} | {dim} | {mib(formula)} | "
                f"{mib(export.checkpoint_bytes(path))} | "
                f"{mib(result['rss_growth'])} | {result['rss_growth'] / formula:.2f} | "
                f"{mib(result['peak_growth'])} | {result['load_seconds']:.1f} | {result['scann_imported']} |",
                flush=True,
            )
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
