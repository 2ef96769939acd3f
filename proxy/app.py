"""The recommendation API: /recommend, /similar, /feedback, health and metrics (FastAPI on uvicorn)."""

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Header, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from proxy import monitor_api, schemas, web
from proxy.batcher import Batcher
from proxy.impressions import ImpressionLog
from proxy.metrics import ApiMetrics
from proxy.model_watcher import ModelWatcher, ServingModel
from proxy.online_store import SeedEvents, open_store
from proxy.redis_store import StoreUnavailable
from serving.tf_serving import BackendError, BackendUnavailable

log = logging.getLogger(__name__)
access_log = logging.getLogger("proxy.access")
RETRY_AFTER_SECONDS = "2"
ERRORS = {
    400: {"model": schemas.Error},
    413: {"model": schemas.Error},
    422: {"model": schemas.Error},
    503: {"model": schemas.Error},
}


@dataclass
class Settings:
    model_base: str
    feedback_db: str
    backend_timeout: float = 2.0  # seconds, every model call
    reload_interval: float = 5.0  # seconds between looks for a newer pushed version
    max_body_bytes: int = 1 << 20
    bigquery_table: str | None = None  # project.dataset.table: also stream feedback there (the cloud)
    api_key: str | None = (
        None  # when set, every endpoint but health checks and docs needs the X-API-Key header
    )
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API from their pages (CORS)
    store_url: str | None = (
        None  # redis://host:port/db: the store every instance shares (proxy/online_store.py)
    )
    store_timeout: float = (
        0.05  # seconds for a /recommend's read of the shared store, then it answers without
    )
    reclaim_idle: float = (
        30.0  # seconds an event may wait unacknowledged by a consumer before another takes it
    )
    # TF Serving backends: every call names a version label of models.config, "canary" for this share of users
    # (0..1, by a hash of the user id, so a user stays on one side) and "stable" for the others. The in-process
    # model is one version and takes no label.
    version_labels: bool = False
    canary_share: float = 0.0
    impression_sample: float = (
        1.0  # share of /recommend answers recorded as impressions (proxy/impressions.py)
    )


STABLE, CANARY = "stable", "canary"
# A request may ask for a label itself (a tester, a comparison): it takes precedence over the user's share.
# Not Optional: the OpenAPI document then offers no null, which a header cannot carry.
LabelHeader = Annotated[
    Literal["stable", "canary"],
    Header(
        alias="X-Model-Label", description="the TF Serving version label to answer with (default: the user's)"
    ),
]


def user_bucket(user_id: str) -> float:
    """Where the user falls in [0, 1): the same in every API instance and after restarts."""
    return int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:8], "big") / 2**64


class Unavailable(Exception):
    """No model to answer with right now: 503 with Retry-After."""


class BodyLimit:
    """ASGI middleware: refuses a body over max_bytes with 413, whether or not Content-Length announces it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _too_large(self.max_bytes)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(self.max_bytes)(scope, receive, send)


class RequestLog:
    """ASGI middleware: gives each request an id (the client's X-Request-ID if it is a plain token, else a new
    one), returns it in the X-Request-ID header and logs one access line with it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started, status = time.perf_counter(), 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client") or ("-", 0)
            access_log.info(
                '%s:%s "%s %s" %d %.1f ms request_id=%s',
                client[0],
                client[1],
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
            )


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REQUEST_ID = re.compile(
    r"[A-Za-z0-9._:-]{1,128}"
)  # what may go into a log line and back into a header as it is


class _BodyTooLarge(Exception):
    pass


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse({"error": f"request body larger than {max_bytes} bytes"}, status_code=413)


def _location(loc: tuple) -> str:
    """Where the problem is, as the client wrote it: a key that is not a plain name (an unknown "a.b", "x: y",
    "", or "body" inside the body) is JSON-quoted, so that every location reads back as one field."""
    parts = loc[1:] if loc[:1] == ("body",) else loc
    return (
        ".".join(
            str(p)
            if isinstance(p, int) or _PLAIN_NAME.fullmatch(str(p)) and p != "body"
            else json.dumps(p, ensure_ascii=False)
            for p in parts
        )
        or "body"
    )


def _validation_message(error: dict) -> str:
    field = _location(tuple(error["loc"]))
    if error["type"] == "json_invalid":
        return f"malformed JSON: {error.get('ctx', {}).get('error', error['msg'])}"
    if error["loc"] == ("body",) and error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return "body: expected a JSON object (Content-Type: application/json)"
    return f"{field}: {error['msg']}"


def _undecodable_body(cause: BaseException) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return f"malformed JSON: the body is not UTF-8 text (byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "malformed JSON: nested too deeply"
    return f"malformed JSON: {type(cause).__name__}"


def create_app(settings: Settings, watcher: ModelWatcher, seed_events: SeedEvents | None = None) -> FastAPI:
    """The API over `watcher`'s current model. Histories and feedback live in the store settings.store_url
    names, or in this process and settings.feedback_db (histories seeded from seed_events, if given, and
    every stored feedback event)."""
    metrics = ApiMetrics()
    store = open_store(
        settings.store_url,
        settings.feedback_db,
        seed_events,
        settings.bigquery_table,
        settings.store_timeout,
        settings.reclaim_idle,
    )
    impressions = ImpressionLog(settings.feedback_db, settings.impression_sample, settings.bigquery_table)
    catalog_size = lambda: len(watcher.current.catalog.items) if watcher.current else None  # noqa: E731
    metrics.registry.register(monitor_api.OnlineMetricsCollector(settings.feedback_db, catalog_size))

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
    api_key_header = APIKeyHeader(
        name="X-API-Key",
        auto_error=False,
        description="the key `recsys serve` was started with (env RECSYS_API_KEY)",
    )

    async def require_key(given: str | None = Security(api_key_header)):
        if not hmac.compare_digest((given or "").encode(), settings.api_key.encode()):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    keyed = (
        [Security(require_key)] if settings.api_key else []
    )  # every route but health checks, page and docs
    api = APIRouter(dependencies=keyed)

    def serving() -> ServingModel:
        if watcher.current is None:
            raise Unavailable("no model loaded yet")
        return watcher.current

    async def call_model(awaitable):
        try:
            return await asyncio.wait_for(awaitable, settings.backend_timeout)
        except (asyncio.TimeoutError, BackendUnavailable) as e:
            raise Unavailable(f"model backend did not answer: {e or 'timed out'}") from e

    def label_for(user_id: str, asked: str | None) -> str | None:
        if not settings.version_labels:
            return None
        return asked or (CANARY if user_bucket(user_id) < settings.canary_share else STABLE)

    def call_backend(model: ServingModel, method: str, label: str | None, *args) -> tuple:
        """(answer, the version that answered), read in the calling thread, where a TF Serving client keeps it."""
        call = getattr(model.backend, method)
        with metrics.model_call_seconds.labels(method).time():
            answer = call(*args, label=label) if label else call(*args)
        if label:
            metrics.answered_by_label[label] = model.version
        return answer, model.version

    def recommend_together(queries: list[tuple]) -> list[tuple]:
        """The queries of concurrent requests, (user_id, history, exclude, k, label) each: one model call per
        label."""
        model = serving()
        metrics.batch_size.observe(len(queries))
        answers = [None] * len(queries)
        for label in dict.fromkeys(q[4] for q in queries):
            indices = [i for i, q in enumerate(queries) if q[4] == label]
            users, histories, excludes, ks, _ = zip(*(queries[i] for i in indices))
            results, version = call_backend(
                model, "recommend", label, list(users), list(histories), list(excludes), max(ks)
            )
            for i, ranked in zip(indices, results):
                answers[i] = (ranked, version)
        return answers

    recommender = Batcher(recommend_together)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        errors = exc.errors()
        status = 400 if any(e["type"] == "json_invalid" for e in errors) else 422
        return JSONResponse({"error": "; ".join(_validation_message(e) for e in errors)}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        message = str(exc.detail)
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not decode the body as JSON
            message = _undecodable_body(exc.__cause__)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Unavailable)
    @app.exception_handler(StoreUnavailable)
    async def unavailable(request, exc: Exception):
        return JSONResponse(
            {"error": str(exc)}, status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS}
        )

    @app.exception_handler(BackendError)
    async def backend_error(request, exc: BackendError):
        log.error("model backend error: %s", exc)
        return JSONResponse({"error": "the model backend refused the request"}, status_code=502)

    @app.exception_handler(Exception)
    async def internal(request, exc: Exception):
        log.exception(
            "unhandled error on %s", request.url.path
        )  # the trace goes to the log, never the client
        return JSONResponse({"error": "internal error"}, status_code=500)

    async def recommend_many(
        reqs: list[schemas.RecommendRequest], request_id: str, asked_label: str | None
    ) -> list[schemas.RecommendResponse]:
        """request_id: the request's (RequestLog); with several users each answer's is request_id-<n>."""
        model = serving()
        catalog = model.catalog
        try:
            histories, seen = zip(*await store.histories([r.user_id for r in reqs]))
            flag = None
        except StoreUnavailable as e:  # answer from the model alone rather than not at all
            log.warning("recommending without histories: %s", e)
            histories, seen, flag = [[]] * len(reqs), [[]] * len(reqs), "history unavailable"
            metrics.degraded.inc(len(reqs))
        excludes = [
            list(dict.fromkeys(r.exclude_item_ids + (seen[i] if r.exclude_seen else [])))[
                : catalog.max_exclusions
            ]
            for i, r in enumerate(reqs)
        ]
        personal = [i for i, r in enumerate(reqs) if histories[i] or r.user_id in catalog.known_users]
        labels = [label_for(r.user_id, asked_label) for r in reqs]
        results = await call_model(
            asyncio.gather(
                *(
                    recommender.submit(
                        (reqs[i].user_id, histories[i], excludes[i], reqs[i].num_recommendations, labels[i])
                    )
                    for i in personal
                )
            )
        )
        answers = dict(zip(personal, results))
        responses = []
        for i, r in enumerate(reqs):
            fallback = None if i in answers else "popularity"
            if fallback:
                metrics.fallbacks.inc()
            ranked, version = answers.get(i) or (
                catalog.popular(r.num_recommendations, set(excludes[i])),
                catalog.version,
            )
            responses.append(
                schemas.RecommendResponse(
                    user_id=r.user_id,
                    model_version=version,
                    model_label=None if fallback else labels[i],
                    fallback=fallback,
                    request_id=request_id if len(reqs) == 1 else f"{request_id}-{i}",
                    degraded=flag,
                    recommendations=[
                        _recommendation(catalog, item, score)
                        for item, score in ranked[: r.num_recommendations]
                    ],
                )
            )
        await impressions.record(responses)
        return responses

    @api.post(
        "/recommend",
        response_model=schemas.RecommendResponse,
        responses=ERRORS,
        response_model_exclude_none=True,
    )
    async def recommend(body: schemas.RecommendRequest, request: Request, label: LabelHeader = None):
        """Recommendations for one user; items they interacted with are left out unless exclude_seen is false."""
        return (await recommend_many([body], request.state.request_id, label))[0]

    @api.post(
        "/recommend/batch",
        response_model=schemas.BatchRecommendResponse,
        responses=ERRORS,
        response_model_exclude_none=True,
    )
    async def recommend_batch(
        body: schemas.BatchRecommendRequest, request: Request, label: LabelHeader = None
    ):
        """Recommendations for up to 100 users in one model call."""
        return schemas.BatchRecommendResponse(
            results=await recommend_many(body.requests, request.state.request_id, label)
        )

    @api.get(
        "/similar/{item_id}",
        response_model=schemas.SimilarResponse,
        responses={404: {"model": schemas.Error}, **ERRORS},
        response_model_exclude_none=True,
    )
    async def similar(
        item_id: Annotated[schemas.Id, Path()], k: int = Query(10, ge=1, le=100), label: LabelHeader = None
    ):
        """The items closest to item_id in the model's item space (the "stable" version unless asked otherwise)."""
        # (`item_id: schemas.Id = Path()` would neither check nor document Id's constraints)
        model = serving()
        if item_id not in model.catalog.items:
            raise HTTPException(404, f"item_id: unknown item {item_id!r}")
        label = (label or STABLE) if settings.version_labels else None
        [ranked], version = await call_model(
            run_in_threadpool(call_backend, model, "similar", label, [item_id], k)
        )
        return schemas.SimilarResponse(
            item_id=item_id,
            model_version=version,
            model_label=label,
            similar=[_recommendation(model.catalog, i, s) for i, s in ranked],
        )

    async def store_feedback(events: list[schemas.FeedbackEvent]) -> list[str]:
        items = serving().catalog.items  # the item's category goes with the event into the next training run
        for n, e in enumerate(events):
            where = f"events.{n}." if len(events) > 1 else ""
            if e.feedback_type == schemas.FeedbackType.rating and e.rating is None:
                raise HTTPException(422, f"{where}rating: required when feedback_type is rating")
            if e.item_id not in items:
                raise HTTPException(422, f"{where}item_id: unknown item {e.item_id!r} (not in the catalog)")
        rows = [
            dict(
                user_id=e.user_id,
                item_id=e.item_id,
                interaction_type=e.feedback_type.value,
                rating=e.rating,
                timestamp=e.timestamp,
                request_id=e.request_id,
                idempotency_key=e.idempotency_key,
                category=items[e.item_id].category,
            )
            for e in events
        ]
        accepted = await store.accept(rows)  # StoreUnavailable: 503, nothing acknowledged
        for row, (_, stored) in zip(rows, accepted):
            if stored:  # not a retry of an event already stored (its idempotency_key): counted once
                metrics.feedback_events.labels(row["interaction_type"]).inc()
        return [event_id for event_id, _ in accepted]

    @api.post("/feedback", status_code=202, response_model=schemas.FeedbackAccepted, responses=ERRORS)
    async def feedback(body: schemas.FeedbackEvent):
        """Stores one event durably (202 only after the commit); the user's next recommendation sees it."""
        return schemas.FeedbackAccepted(event_id=(await store_feedback([body]))[0])

    @api.post(
        "/feedback/batch", status_code=202, response_model=schemas.BatchFeedbackAccepted, responses=ERRORS
    )
    async def feedback_batch(body: schemas.BatchFeedbackRequest):
        """Stores up to 1000 events in one transaction."""
        return schemas.BatchFeedbackAccepted(event_ids=await store_feedback(body.events))

    @app.get("/healthz")
    async def healthz():
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": schemas.Error}})
    async def readyz():
        """A model is loaded and its backend answers."""
        model = serving()
        ready = getattr(model.backend, "ready", None)
        if ready is not None and not await run_in_threadpool(ready):
            raise Unavailable("model backend not ready")
        return {"status": "ready", "model_version": watcher.version}

    app.include_router(api)
    app.include_router(web.page())
    app.include_router(web.router(settings.model_base, serving, store), dependencies=keyed)
    app.include_router(monitor_api.router(settings.feedback_db, catalog_size), dependencies=keyed)
    metrics.follow(lambda: watcher.version, lambda: len(watcher.failed), store.delivery_backlog)
    metrics.instrument(app, dependencies=keyed)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(
        RequestLog
    )  # outermost: every answer, 413s and CORS preflights too, has an id and a line
    return app


def _recommendation(catalog, item_id: str, score: float) -> schemas.Recommendation:
    item = catalog.items.get(item_id)
    return schemas.Recommendation(
        item_id=item_id,
        score=round(score, 6),
        title=item.title if item else None,
        category=item.category if item else None,
    )
