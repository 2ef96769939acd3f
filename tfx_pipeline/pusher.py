"""Pusher executor that keeps every SavedModel of the serving directory whole.

The stock executor holds back each file named saved_model.pb and then copies only the top one, so the
nested ScaNN SavedModel would arrive without its graph. Here every file is copied, the top
saved_model.pb last: TF Serving and the embedded backend take a version as complete once it appears.
"""

import os
import re
import time

from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

SAVED_MODEL_PB = "saved_model.pb"


def push_version(model_path: str, base_directory: str) -> tuple[str, str]:
    """Copies the model to <base_directory>/<unix time>/; returns (version, path)."""
    version = str(int(time.time()))
    serving_path = os.path.join(base_directory, version)
    while fileio.exists(serving_path):  # two pushes within a second get distinct versions
        version = str(int(version) + 1)
        serving_path = os.path.join(base_directory, version)
    top_graph = os.path.join(model_path, SAVED_MODEL_PB)
    io_utils.copy_dir(model_path, serving_path, deny_regex_patterns=[f"^{re.escape(top_graph)}$"])
    io_utils.copy_file(top_graph, os.path.join(serving_path, SAVED_MODEL_PB))
    return version, serving_path


class Executor(pusher_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], pusher_pb2.PushDestination())
        model_path = self.GetModelPath(input_dict).rstrip("/")
        version, serving_path = push_version(model_path, destination.filesystem.base_directory)
        io_utils.copy_dir(model_path, model_push.uri)  # the archive copy, as the stock executor keeps
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
