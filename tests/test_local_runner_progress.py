"""The local runner's progress, read from the metadata store while a run writes it: here a store written by
hand the way TFX records a run (a run context, a node context per component, an execution per component)."""

import threading

import pytest
from ml_metadata.proto import metadata_store_pb2

from tfx_pipeline import metadata

pytestmark = pytest.mark.fast
Execution = metadata_store_pb2.Execution


class FakeRun:
    """Writes one run's executions into a metadata store, as the runner does."""

    def __init__(self, path, run_name):
        self.store = metadata.open_store(path)
        self.types = {
            name: self.store.put_context_type(metadata_store_pb2.ContextType(name=name))
            for name in (metadata.RUN_CONTEXT, metadata.NODE_CONTEXT)
        }
        self.execution_type = self.store.put_execution_type(
            metadata_store_pb2.ExecutionType(name="Component")
        )
        self.run = self._context(metadata.RUN_CONTEXT, run_name)

    def _context(self, type_name, name) -> metadata_store_pb2.Context:
        """The context of that type and name, created if new (a node's context is shared by every run)."""
        context = self.store.get_context_by_type_and_name(type_name, name)
        if context is None:
            context = metadata_store_pb2.Context(type_id=self.types[type_name], name=name)
            [context.id] = self.store.put_contexts([context])
        return context

    def start(self, node: str) -> Execution:
        execution = Execution(type_id=self.execution_type, last_known_state=Execution.RUNNING)
        node_context = self._context(metadata.NODE_CONTEXT, f"recsys.{node}")
        execution.id, *_ = self.store.put_execution(
            execution, artifact_and_events=[], contexts=[self.run, node_context]
        )
        return execution

    def end(self, execution: Execution, state):
        [execution] = self.store.get_executions_by_id([execution.id])
        execution.last_known_state = state
        self.store.put_executions([execution])


def test_progress_follows_this_runs_executions_while_it_runs_and_stops_when_it_fails(tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    earlier = FakeRun(path, "an earlier run")
    earlier.end(earlier.start("Trainer"), Execution.COMPLETE)

    lines, seen_while_running = [], threading.Event()

    def echo(line):
        lines.append(line)
        if line == "[pipeline] Trainer: started":
            seen_while_running.set()

    progress = metadata.RunProgress(path, "recsys", echo)
    run = FakeRun(path, "this run")
    with pytest.raises(RuntimeError, match="the trainer broke"), progress.following():
        run.end(run.start("StatisticsGen"), Execution.CACHED)
        trainer = run.start("Trainer")
        # The poller reports the start while the component still runs.
        assert seen_while_running.wait(10 * metadata.POLL_SECONDS)
        run.end(trainer, Execution.FAILED)
        raise RuntimeError("the trainer broke")

    assert lines[:2] == [
        "[pipeline] StatisticsGen: started",
        "[pipeline] StatisticsGen: done in 0.0 s (cached)",
    ]
    assert lines[2] == "[pipeline] Trainer: started"
    assert lines[3].startswith("[pipeline] Trainer: ended without output after ") and len(lines) == 4
    assert set(progress.executions) == {"StatisticsGen", "Trainer"}  # not the earlier run's Trainer
    assert progress.executions["Trainer"].last_known_state == Execution.FAILED
    assert metadata.seconds(progress.executions["Trainer"]) >= 0
