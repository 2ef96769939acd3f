"""The local runner's ML Metadata store (SQLite): opening it, and following one run's executions in it while
the runner writes them."""

import contextlib
import os
import threading

from ml_metadata import errors as metadata_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

# The metadata's context types TFX records each execution under: the run (named by the time it started) and
# the node ("<pipeline>.<node id>").
RUN_CONTEXT, NODE_CONTEXT = "pipeline_run", "node"
POLL_SECONDS = 0.5
_Execution = metadata_store_pb2.Execution
_FINISHED = {
    _Execution.COMPLETE: "done in {:.1f} s",
    _Execution.CACHED: "done in {:.1f} s (cached)",
    _Execution.FAILED: "ended without output after {:.1f} s",
}


def open_store(path: str, read_only: bool = False) -> metadata_store.MetadataStore:
    """The SQLite store at path (created if missing, unless read_only)."""
    if not read_only:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
        if read_only
        else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return metadata_store.MetadataStore(config)


class RunProgress:
    """Follows one run's executions in the metadata store, where the runner records each component's state
    and times: prints each component as it starts and ends, with its wall time. It reads the metadata rather
    than the runner's log lines, because TensorFlow silences absl logging while it saves a model."""

    def __init__(self, metadata_path: str, pipeline_name: str, echo):
        self._metadata_path, self._pipeline_name, self._echo = metadata_path, pipeline_name, echo
        # Opening the store creates it on a first run; any run context already in it is an earlier run's.
        self._earlier_runs = {c.id for c in open_store(metadata_path).get_contexts_by_type(RUN_CONTEXT)}
        self._nodes = {}  # execution id: node id
        self._reported = {}  # execution id: the last state echoed
        self.executions = {}  # node id: its execution in this run

    @contextlib.contextmanager
    def following(self):
        """Polls the metadata from a background thread while the block runs the pipeline, and once more when
        it ends, however it ends."""
        stop = threading.Event()
        poller = threading.Thread(target=self._poll_until, args=(stop,), daemon=True)
        poller.start()
        try:
            yield
        finally:
            stop.set()
            poller.join()
            self.poll(open_store(self._metadata_path))

    def _poll_until(self, stop: threading.Event):
        store = open_store(self._metadata_path)  # a connection of this thread's own
        while not stop.wait(POLL_SECONDS):
            # AbortedError: the runner held the database's lock past MLMD's retries; read it next time.
            with contextlib.suppress(metadata_errors.AbortedError):
                self.poll(store)

    def poll(self, store: metadata_store.MetadataStore):
        runs = [c for c in store.get_contexts_by_type(RUN_CONTEXT) if c.id not in self._earlier_runs]
        for execution in sorted(
            (e for run in runs for e in store.get_executions_by_context(run.id)), key=lambda e: e.id
        ):
            if execution.id not in self._nodes:
                [node] = [c for c in store.get_contexts_by_execution(execution.id) if c.type == NODE_CONTEXT]
                self._nodes[execution.id] = node.name.removeprefix(self._pipeline_name + ".")
            self.executions[self._nodes[execution.id]] = execution
            self._report(execution)

    def _report(self, execution):
        name, state = self._nodes[execution.id], execution.last_known_state
        if execution.id not in self._reported:
            self._echo(f"[pipeline] {name}: started")
            self._reported[execution.id] = _Execution.RUNNING
        if state in _FINISHED and self._reported[execution.id] != state:
            self._echo(f"[pipeline] {name}: " + _FINISHED[state].format(seconds(execution)))
            self._reported[execution.id] = state


def seconds(execution) -> float:
    """An execution's wall time, from its registration to its last update (its result's publication)."""
    return (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000


def recorded_outputs(metadata_path: str, executions: dict) -> dict:
    """{component: {output key: [artifact]}} as the metadata recorded each execution of this run: for a cached
    execution the cached artifacts, which the launcher's own result does not name."""
    store = open_store(metadata_path)
    outputs = {}
    for name, execution_id in executions.items():
        events = [
            e
            for e in store.get_events_by_execution_ids([execution_id])
            if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
        ]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        outputs[name] = {}
        for e in events:
            outputs[name].setdefault(e.path.steps[0].key, []).append(artifacts[e.artifact_id])
    return outputs
