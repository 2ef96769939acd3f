"""The recommendation API: create_app wires the settings, the model watcher, the store, the routers, the error
handlers and the middleware. The endpoints are in proxy/routes/, what they share in proxy/deps.py."""

import contextlib

from fastapi import Depends, FastAPI, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from proxy import errors, monitor_api, online_metrics, skew
from proxy.deps import impressions_written, require_key
from proxy.impressions import ImpressionLog
from proxy.metrics import ApiMetrics
from proxy.middleware import BodyLimit, RequestLog
from proxy.model_watcher import ModelWatcher
from proxy.online_store import SeedEvents, open_store
from proxy.recommender import Recommender
from proxy.routes import feedback, health, recommend, web
from proxy.settings import Settings


def create_app(settings: Settings, watcher: ModelWatcher, seed_events: SeedEvents | None = None) -> FastAPI:
    """The API over `watcher`'s current model. Histories and feedback live in the store settings.store
    names, or in this process and settings.feedback_db (histories seeded from seed_events, if given, and
    every stored feedback event)."""
    store = open_store(
        settings.store,
        settings.feedback_db,
        seed_events,
        settings.bigquery_table,
        settings.store_timeout,
        settings.reclaim_idle,
    )
    impressions = ImpressionLog(
        settings.feedback_db,
        settings.impression_sample,
        settings.bigquery_table,
        shared_store=store if settings.store else None,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await store.start()
        await impressions.start()
        await run_in_threadpool(watcher.poll)
        watcher.start()
        yield
        watcher.stop()
        await impressions.stop()
        await store.stop()

    # FastAPIOffline: /docs and /redoc from files installed with the package, not a CDN (works offline).
    app = FastAPIOffline(
        title="recsys API",
        version="1",
        lifespan=lifespan,
        description="Personalized recommendations from the two-tower model the pipeline pushed.",
    )
    metrics = ApiMetrics()
    app.state.settings, app.state.watcher, app.state.store, app.state.metrics = (
        settings,
        watcher,
        store,
        metrics,
    )
    app.state.recommender = Recommender(settings, watcher, store, metrics, impressions)
    catalog = lambda: watcher.current.catalog if watcher.current else None  # noqa: E731
    metrics_source = online_metrics.source(settings.feedback_db, settings.store)
    traffic_source = skew.source(settings.feedback_db, settings.store)
    metrics.registry.register(
        monitor_api.OnlineMetricsCollector(metrics_source, traffic_source, catalog, settings.skew_thresholds)
    )
    app.state.reports = web.VersionReports(settings.model_base)
    keyed = [Security(require_key)] if settings.api_key else []  # not the probes, the page and the docs
    monitor = monitor_api.router(metrics_source, traffic_source, catalog, settings.skew_thresholds)
    for router in (recommend.router, feedback.router, web.router):
        app.include_router(router, dependencies=keyed)
    reading_impressions = [*keyed, Depends(impressions_written)]
    app.include_router(monitor, dependencies=reading_impressions)
    app.include_router(health.probes)
    app.include_router(web.page)
    errors.add_handlers(app)
    metrics.follow(lambda: watcher.version, lambda: len(watcher.failed), store.delivery_backlog)
    metrics.expose(app, dependencies=reading_impressions)
    _add_middleware(app, settings, metrics)
    return app


def _add_middleware(app: FastAPI, settings: Settings, metrics: ApiMetrics):
    """The last added runs first: RequestLog is outermost, so every answer, 413s and CORS preflights too, has
    an id, a log line and its place in the HTTP metrics."""
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(RequestLog, metrics=metrics)
