"""What k8s/ deploys can load what the Pusher writes: models.config names the Pusher's base, the stock
tensorflow/serving image's release is the one that wrote the SavedModel, and every version root is a
SavedModel without ScaNN ops that loads where scann was never imported; the export report states its serving
memory."""

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import contract
from serving import exported
from tests.test_deploy_artifacts import CONFIG, OBJECTS, _container, _one, model_config
from trainer_module import export

# A fresh interpreter, as TF Serving's process: it loads and calls the version root without importing scann.
LOAD_WITHOUT_SCANN = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    out = model.signatures["serving_default"](user_id=tf.constant(["u00001"]), history=tf.constant([[""]]),
                                               exclude_item_ids=tf.zeros([1, 0], tf.string))
    print(json.dumps({"items": out["item_ids"].shape.as_list(), "scann_imported": "scann" in sys.modules}))
""")


def _saved_model(path: str) -> saved_model_pb2.SavedModel:
    with open(os.path.join(path, "saved_model.pb"), "rb") as fh:
        return saved_model_pb2.SavedModel.FromString(fh.read())


def _ops(path: str) -> set[str]:
    """Every op of the SavedModel's graph and of the functions in its library."""
    [graph] = [m.graph_def for m in _saved_model(path).meta_graphs]
    return {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}


def test_the_version_root_has_no_scann_op_and_loads_where_scann_was_never_imported(pipeline_run):
    pushed = pipeline_run["pushed"]
    assert not {op for op in _ops(pushed) if op.startswith("Scann")}
    assert {
        op for op in _ops(os.path.join(pushed, contract.SCANN_DIR)) if op.startswith("Scann")
    }  # the check bites
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_SCANN, pushed],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"items": [1, 100], "scann_imported": False}


def test_models_config_the_image_and_the_pushed_layout_agree(pipeline_run):
    pushed = pipeline_run["pushed"]
    model = model_config()
    # TF Serving serves <base_path>/<integer version>/ with the model's name; the Pusher writes
    # <bucket>/serving/<model_name>/<push time>/ in the cloud, as it wrote <workdir>/serving/recsys/<push
    # time>/ here.
    assert model.base_path == CONFIG.serving_base and os.path.basename(model.base_path) == model.name
    assert os.path.dirname(pushed) == os.path.join(pipeline_run["workdir"], "serving", model.name)
    assert os.path.basename(pushed).isdigit()
    # The stock image's TF Serving release runs the TensorFlow release that wrote the SavedModel.
    image = _container(_one("Deployment", "tf-serving"))["image"]
    writer = _saved_model(pushed).meta_graphs[0].meta_info_def.tensorflow_version
    assert image.startswith("tensorflow/serving:")
    assert image.rsplit(":", 1)[1].split(".")[:2] == writer.split(".")[:2] == tf.__version__.split(".")[:2]
    assert OBJECTS  # rendered by kubectl kustomize


def test_the_export_report_states_the_serving_memory_of_the_version(pipeline_run):
    pushed = pipeline_run["pushed"]
    report = exported.read_report(pushed)
    sizes = (
        report["num_users"],
        report["num_items"],
        report["hyperparameters"]["embedding_dim"],
        report["serving"]["num_models"],
    )
    assert report["serving"]["num_models"] == 2  # the refit averaged with the candidate
    # The formula counts exactly the numeric variables the SavedModel's checkpoint holds.
    assert (
        report["serving"]["variable_bytes"]
        == export.variable_bytes(*sizes)
        == export.checkpoint_bytes(pushed)
    )
    assert report["serving"]["memory_bytes"] == export.serving_memory(*sizes) >= export.variable_bytes(*sizes)


# docs/deployment.md's sizing assumptions: the server's own memory, GCS download rate; the load rate is
# measured (docs/experiments.md, "Serving memory").
SERVER_ALLOWANCE_MIB = 512
GCS_MIB_PER_SECOND = 50
LOAD_SECONDS_PER_GIB = 5
VERSIONS_LOADED = 2  # models.config's stable and canary


def _sizing_rows() -> list[list[str]]:
    deployment = (Path(__file__).resolve().parent.parent / "docs" / "deployment.md").read_text()
    section = deployment.split("## Sizing TF Serving from the model")[1].split("\n## ")[0]
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if re.match(r"\| [0-9]", line)
    ]


def _mib(text: str) -> int:
    quantity = re.fullmatch(r"(\d+)(Mi|Gi)", text)
    return int(quantity.group(1)) * (1024 if quantity.group(2) == "Gi" else 1)


def test_the_deployment_sizing_table_follows_from_the_export_formula_and_sizes_the_manifest():
    mib = 2**20
    container = _container(_one("Deployment", "tf-serving"))
    startup = container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"]
    rows = _sizing_rows()
    assert len(rows) >= 4
    for users, items, dim, one, limit, start, note in rows:
        sizes = (int(users.replace(",", "")), int(items.replace(",", "")), int(dim), 2)
        memory, variables = export.serving_memory(*sizes), export.variable_bytes(*sizes)
        assert one == f"{round(memory / mib)} MiB"
        needed = math.ceil((VERSIONS_LOADED * memory / mib + SERVER_ALLOWANCE_MIB) / 256) * 256
        assert limit == f"{needed} MiB"
        seconds = (
            2
            * VERSIONS_LOADED
            * (variables / mib / GCS_MIB_PER_SECOND + LOAD_SECONDS_PER_GIB * variables / 2**30)
        )
        assert start == f"{round(seconds)} s"
        assert (round(seconds) > startup) == ("failureThreshold" in note), (users, note)
    # The committed manifest is its row: memory request = limit, and start-up within the probe's budget.
    [committed] = [row for row in rows if "as committed" in row[6]]
    resources = container["resources"]
    assert (
        _mib(resources["requests"]["memory"])
        == _mib(resources["limits"]["memory"])
        == int(committed[4].split()[0])
    )
    assert int(committed[5].split()[0]) <= startup
