"""The endpoints' dependencies, declared once: what create_app put on app.state, and the API key check.

All `async def`: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per request for a
lookup that never blocks."""

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

from proxy.errors import Unavailable
from proxy.metrics import ApiMetrics
from proxy.model_watcher import ModelWatcher, ServingModel
from proxy.recommender import Recommender
from proxy.settings import Settings

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="the key `recsys serve` was started with (env RECSYS_API_KEY)",
)


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _watcher(request: Request) -> ModelWatcher:
    return request.app.state.watcher


async def _store(request: Request):
    return request.app.state.store


async def _metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


async def _recommender(request: Request) -> Recommender:
    return request.app.state.recommender


async def impressions_written(request: Request):
    """For the endpoints that read the impressions: those of every answer served so far are written (the
    answers do not wait for them: proxy/impressions.py)."""
    await request.app.state.recommender.impressions.flush()


async def serving_model(watcher: Annotated[ModelWatcher, Depends(_watcher)]) -> ServingModel:
    """The model loaded now; the request keeps it even if a newer version is swapped in meanwhile."""
    if watcher.current is None:
        raise Unavailable("no model loaded yet")
    return watcher.current


SettingsDep = Annotated[Settings, Depends(_settings)]
WatcherDep = Annotated[ModelWatcher, Depends(_watcher)]
StoreDep = Annotated[object, Depends(_store)]  # proxy/online_store.py: LocalStore or SharedStore
MetricsDep = Annotated[ApiMetrics, Depends(_metrics)]
RecommenderDep = Annotated[Recommender, Depends(_recommender)]
ModelDep = Annotated[ServingModel, Depends(serving_model)]


async def require_key(settings: SettingsDep, given: Annotated[str | None, Security(api_key_header)] = None):
    """Every endpoint but health checks, the page and the docs needs the key, when the API has one."""
    if settings.api_key and not hmac.compare_digest((given or "").encode(), settings.api_key.encode()):
        raise HTTPException(401, "missing or wrong X-API-Key header")
