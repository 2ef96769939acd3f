"""/healthz and /readyz, open for the probes (GET /metrics is proxy/metrics.py's)."""

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from proxy import schemas
from proxy.deps import ModelDep, WatcherDep
from proxy.errors import Unavailable

probes = APIRouter()


@probes.get("/healthz")
async def healthz():
    """The process is alive."""
    return {"status": "ok"}


@probes.get("/readyz", responses={503: {"model": schemas.Error}})
async def readyz(model: ModelDep, watcher: WatcherDep):
    """A model is loaded and its backend answers."""
    ready = getattr(model.backend, "ready", None)
    if ready is not None and not await run_in_threadpool(ready):
        raise Unavailable("model backend not ready")
    return {"status": "ready", "model_version": watcher.version}
