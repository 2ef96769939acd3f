"""/healthz and /readyz (open, for probes), and /metrics (Prometheus; behind the key when there is one)."""

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from proxy import schemas
from proxy.deps import MetricsDep, ModelDep, WatcherDep
from proxy.errors import Unavailable

probes = APIRouter()
router = APIRouter()


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


@router.get("/metrics", include_in_schema=False)
async def metrics(api_metrics: MetricsDep):
    # In a thread: the online metrics are a query of the impressions at each scrape.
    content = await run_in_threadpool(generate_latest, api_metrics.registry)
    return Response(content, media_type=CONTENT_TYPE_LATEST)
