"""The API's Prometheus metrics (GET /metrics), all defined here.

Each app has a registry of its own (tests run several apps in one process) holding, besides the API's
metrics, the client library's process, platform and garbage-collector collectors
(process_resident_memory_bytes and the like: memory matters for a TensorFlow process). HTTP requests are
counted and timed by proxy/middleware.py's RequestLog: http_requests_total{handler,method,status} and
http_request_duration_seconds{handler,method}, by route template so ids in paths do not multiply the
series.
"""

from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

MODEL_CALL_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ApiMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        if GC_COLLECTOR is not None:
            GCCollector(registry=self.registry)
        self.feedback_events = Counter(
            "recsys_feedback_events", "Feedback events stored", ["feedback_type"], registry=self.registry
        )
        self.fallbacks = Counter(
            "recsys_popularity_fallbacks", "Answers from popularity", registry=self.registry
        )
        self.degraded = Counter(
            "recsys_degraded_answers",
            "Answers without the users' histories (the store did not answer in time)",
            registry=self.registry,
        )
        self.model_call_seconds = Histogram(
            "recsys_model_call_seconds",
            "Calls of the model backend (in-process or TF Serving) by signature method",
            ["method"],
            registry=self.registry,
            buckets=MODEL_CALL_BUCKETS,
        )
        self.batch_size = Histogram(
            "recsys_batch_size",
            "Users per /recommend model call (concurrent requests joined by proxy/batcher.py)",
            registry=self.registry,
            buckets=BATCH_SIZE_BUCKETS,
        )
        self.http_requests = Counter(
            "http_requests", "HTTP requests answered", ["handler", "method", "status"], registry=self.registry
        )
        self.http_request_seconds = Histogram(
            "http_request_duration_seconds",
            "Time from a request's arrival to its answer's last byte",
            ["handler", "method"],
            registry=self.registry,
        )
        self.answered_by_label: dict[
            str, str
        ] = {}  # TF Serving version label -> the version that last answered

    def expose(self, app: FastAPI, dependencies: list) -> None:
        """Serves GET /metrics (outside the OpenAPI document) with the given dependencies (the API key
        check)."""
        router = APIRouter()

        @router.get("/metrics", include_in_schema=False)
        async def scrape():
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        app.include_router(router, dependencies=dependencies)

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        """One answered request; /metrics's own scrapes are not counted."""
        if handler != "/metrics":
            self.http_requests.labels(handler, method, str(status)).inc()
            self.http_request_seconds.labels(handler, method).observe(seconds)

    def follow(
        self,
        model_version: Callable[[], str | None],
        reload_failures: Callable[[], int],
        feedback_backlog: Callable[[], int | None],
    ) -> None:
        """Reads, at each scrape, the loaded model version, the failed loads so far and the feedback events
        waiting for their sink (None: no sink to wait for)."""
        self.registry.register(_StateCollector(self, model_version, reload_failures, feedback_backlog))


class _StateCollector:
    def __init__(self, metrics: ApiMetrics, model_version, reload_failures, feedback_backlog):
        self.metrics = metrics
        self.model_version, self.reload_failures, self.feedback_backlog = (
            model_version,
            reload_failures,
            feedback_backlog,
        )

    def collect(self):
        info = GaugeMetricFamily(
            "recsys_model_info",
            'The model version served: label "" for the version loaded from the model base (the in-process'
            " model, or the catalog beside TF Serving), else the TF Serving version label that answered with"
            " it",
            labels=["version", "label"],
        )
        version = self.model_version()
        if version is not None:
            info.add_metric([version, ""], 1)
        for label, answered in sorted(self.metrics.answered_by_label.items()):
            info.add_metric([answered, label], 1)
        yield info
        yield CounterMetricFamily(
            "recsys_model_reload_failures",
            "Pushed model versions that failed to load (each is skipped; the current one keeps serving)",
            value=self.reload_failures(),
        )
        backlog = self.feedback_backlog()
        if backlog is not None:
            yield GaugeMetricFamily(
                "recsys_feedback_backlog",
                "Accepted feedback events not yet delivered to their sink (BigQuery, or the SQLite file "
                "behind the shared store), as last measured by the delivery thread",
                value=backlog,
            )
