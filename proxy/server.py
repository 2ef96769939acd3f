"""`recsys serve`: builds the backend named by --backend and runs the API under uvicorn."""

import contextlib
import logging
import logging.handlers
import os
import queue
import signal
import socket
import sys
import threading

import uvicorn

from proxy.app import create_app
from proxy.model_watcher import ModelWatcher, embedded_loader, remote_loader
from proxy.online_store import SeedEvents
from proxy.settings import Settings
from serving.catalog import newest_version
from serving.tf_serving import client_for_url

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_app(settings: Settings, seed_events: SeedEvents | None = None):
    """settings.backend: None for the embedded model, or grpc://host:8500 / http://host:8501 for TF Serving
    (the model name defaults to the last part of model_base, as TF Serving's --model_base_path convention),
    asked for the "canary" version label for canary_share of the users and "stable" for the others.
    settings.store: None for histories and feedback in this process, or redis://host:port/db for a shared
    store."""
    model_base = settings.model_base.rstrip("/")
    settings = settings.model_copy(update={"model_base": model_base})
    if settings.backend:
        name = settings.model_name or os.path.basename(model_base)
        load = remote_loader(model_base, client_for_url(settings.backend, name, settings.timeout))
    else:
        load = embedded_loader(model_base)
    return create_app(settings, ModelWatcher(model_base, load, settings.reload_interval), seed_events)


def serve(
    listener: socket.socket,
    settings: Settings,
    wait_for_model: bool = False,
    seed_events: SeedEvents | None = None,
):
    """Serves on `listener` (bound by the caller, so a taken port is reported before anything loads). Without
    wait_for_model, a model base without a pushed version raises FileNotFoundError naming it."""
    with _log_lines_written_by_a_thread():
        _serve(listener, settings, wait_for_model, seed_events)


@contextlib.contextmanager
def _log_lines_written_by_a_thread():
    """Log lines (an access line per request) go through a queue to a thread that writes them to stderr: the
    event loop neither pays for nor waits on the write. Every queued line is written before the process ends,
    after a SIGTERM too (uvicorn re-raises it once shut down: here it exits through this block instead of
    killing the process with lines still queued)."""
    writer = logging.StreamHandler()
    writer.setFormatter(logging.Formatter(LOG_FORMAT))
    lines = queue.SimpleQueue()
    enqueue = logging.handlers.QueueHandler(lines)
    enqueue.setFormatter(logging.Formatter("%(message)s"))  # the line's prefix is the writer's to add
    logging.basicConfig(level=logging.INFO, handlers=[enqueue])
    thread = logging.handlers.QueueListener(lines, writer)
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    thread.start()
    try:
        yield
    finally:
        thread.stop()
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _serve(listener: socket.socket, settings: Settings, wait_for_model: bool, seed_events: SeedEvents | None):
    model_base = settings.model_base
    try:
        newest_version(model_base)
    except FileNotFoundError:
        if not wait_for_model:
            raise
        log.info("no model pushed under %s yet: waiting for one (503 until then)", model_base)
    app = build_app(settings, seed_events)
    host, port = listener.getsockname()[:2]
    log.info("listening on http://%s:%d", f"[{host}]" if ":" in host else host, port)
    # One process: each would hold the model (and its own histories without --store), and two measured no
    # faster on 2 cores (docs/experiments.md).
    config = uvicorn.Config(
        app,
        workers=1,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )
    # Ctrl-C is how it stops: uvicorn re-raises the signal once it has shut down.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[listener])
