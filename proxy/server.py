"""`recsys serve`: builds the backend named by --backend and runs the API under uvicorn."""

import logging
import os
import socket

import uvicorn

from proxy.app import Settings, create_app
from proxy.model_watcher import ModelWatcher, embedded_loader, remote_loader
from proxy.online_store import SeedEvents
from serving.catalog import newest_version
from serving.tf_serving import client_for_url

log = logging.getLogger(__name__)


def build_app(
    model_base: str,
    feedback_db: str,
    seed_events: SeedEvents | None = None,
    backend: str | None = None,
    model_name: str | None = None,
    timeout: float = 2.0,
    reload_interval: float = 5.0,
    bigquery_table: str | None = None,
    api_key: str | None = None,
    store: str | None = None,
    reclaim_idle: float = 30.0,
    canary_share: float = 0.0,
    cors_origins: tuple[str, ...] = (),
    impression_sample: float = 1.0,
):
    """backend: None for the embedded model, or grpc://host:8500 / http://host:8501 for TF Serving (the
    model name defaults to the last part of model_base, as TF Serving's --model_base_path convention), asked
    for the "canary" version label for canary_share of the users and "stable" for the others.
    store: None for histories and feedback in this process, or redis://host:port/db for a shared store."""
    model_base = model_base.rstrip("/")
    if backend:
        client = client_for_url(backend, model_name or os.path.basename(model_base), timeout)
        load = remote_loader(model_base, client)
    else:
        load = embedded_loader(model_base)
    settings = Settings(
        model_base=model_base,
        feedback_db=feedback_db,
        backend_timeout=timeout,
        reload_interval=reload_interval,
        bigquery_table=bigquery_table,
        api_key=api_key,
        store_url=store,
        reclaim_idle=reclaim_idle,
        version_labels=bool(backend),
        canary_share=canary_share,
        cors_origins=cors_origins,
        impression_sample=impression_sample,
    )
    return create_app(settings, ModelWatcher(model_base, load, reload_interval), seed_events)


def serve(listener: socket.socket, wait_for_model: bool = False, **kwargs):
    """Serves on `listener` (bound by the caller, so a taken port is reported before anything loads). Without
    wait_for_model, a model base without a pushed version raises FileNotFoundError naming it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model_base = kwargs["model_base"]
    try:
        newest_version(model_base)
    except FileNotFoundError:
        if not wait_for_model:
            raise
        log.info("no model pushed under %s yet: waiting for one (503 until then)", model_base)
    app = build_app(**kwargs)
    host, port = listener.getsockname()[:2]
    log.info("listening on http://%s:%d", f"[{host}]" if ":" in host else host, port)
    # One process: the embedded model is large and TensorFlow already uses every core for one call.
    config = uvicorn.Config(
        app,
        workers=1,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:  # Ctrl-C is how it stops: uvicorn re-raises the signal once it has shut down
        pass
