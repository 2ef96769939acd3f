"""Pusher executor that keeps every SavedModel of the serving directory whole. The version root is the
brute-force SavedModel (stock TF Serving loads it); scann/ inside it is for the in-process backend where
`import scann` works. The Evaluator's report travels with the model: assets.extra/evaluation.json of the
pushed version.

The stock executor holds back each file named saved_model.pb and then copies only the top one, so the
nested ScaNN SavedModel would arrive without its graph. Here every file is copied, each top saved_model.pb
last: TF Serving and the embedded backend take a version as complete once it appears.
"""

import os
import re
import time

from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

import contract

SAVED_MODEL_PB = "saved_model.pb"


def _copy_saved_model(src: str, dst: str, extra_files: tuple[str, ...] = ()):
    """extra_files go into dst/assets.extra/ before the top graph, which makes the version complete."""
    top_graph = os.path.join(src, SAVED_MODEL_PB)
    io_utils.copy_dir(src, dst, deny_regex_patterns=[f"^{re.escape(top_graph)}$"])
    for path in extra_files:
        io_utils.copy_file(
            path, os.path.join(dst, contract.EXTRA_DIR, os.path.basename(path)), overwrite=True
        )
    io_utils.copy_file(top_graph, os.path.join(dst, SAVED_MODEL_PB))


def push_version(model_path: str, base_directory: str, extra_files: tuple[str, ...] = ()) -> tuple[str, str]:
    """Copies the model (with extra_files in its assets.extra/) to <base_directory>/<unix time>/;
    returns (version, path)."""
    version = int(time.time())
    while fileio.exists(
        os.path.join(base_directory, str(version))
    ):  # two pushes within a second: distinct versions
        version += 1
    serving_path = os.path.join(base_directory, str(version))
    _copy_saved_model(model_path, serving_path, extra_files)
    return str(version), serving_path


class Executor(pusher_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], pusher_pb2.PushDestination()
        )
        model_path = self.GetModelPath(input_dict).rstrip("/")
        blessing = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_BLESSING_KEY])
        version, serving_path = push_version(
            model_path,
            destination.filesystem.base_directory,
            (os.path.join(blessing.uri, contract.EVALUATION_FILE),),
        )
        io_utils.copy_dir(model_path, model_push.uri)  # the archive copy, as the stock executor keeps
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
