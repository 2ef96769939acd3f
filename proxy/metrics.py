"""The API's Prometheus metrics, in a registry of its own (one per app, so tests can start several)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ApiMetrics:
    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("recsys_requests", "API requests", ["endpoint", "status"], registry=registry)
        self.latency = Histogram(
            "recsys_request_seconds",
            "API request latency",
            ["endpoint"],
            registry=registry,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        )
        self.model_version = Gauge("recsys_model_version", "Model version being served", registry=registry)
        self.feedback_events = Counter(
            "recsys_feedback_events", "Feedback events stored", ["feedback_type"], registry=registry
        )
        self.fallbacks = Counter("recsys_popularity_fallbacks", "Answers from popularity", registry=registry)
        self.degraded = Counter(
            "recsys_degraded_answers",
            "Answers without the users' histories (the store did not answer in time)",
            registry=registry,
        )
