"""The online metrics and the A/B report over HTTP (GET /monitor/online) and in /metrics (gauges per model
version and variant over the last DEFAULT_HOURS); the served traffic's skew from the serving version's
training data (GET /monitor/skew, and gauges)."""

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, HTTPException, Query
from prometheus_client.core import GaugeMetricFamily
from starlette.concurrency import run_in_threadpool

from proxy import ab_report, skew
from proxy.feedback_store import utc_iso
from serving.catalog import Catalog

DEFAULT_HOURS = 24
DEFAULT_K = 10


def window(hours: float, until: datetime | None = None) -> tuple[str, str]:
    until = until or datetime.now(timezone.utc)
    return utc_iso(until - timedelta(hours=hours)), utc_iso(until + timedelta(seconds=1))


def online_report(metrics, hours: float, k: int, metric: str, catalog_size: int | None) -> dict:
    """The metrics per version and variant over the last `hours`, and the A/B report between the variants;
    metrics: online_metrics.source's."""
    since, until = window(hours)
    rows = metrics(since, until, k, catalog_size)
    ab = ab_report.report(rows, metric=metric)
    return {
        "since": since,
        "until": until,
        "k": k,
        "versions": [r.as_dict() for r in rows],
        "ab": dict(ab.as_dict(), summary=ab_report.describe(ab)),
    }


def skew_report(traffic, catalog: Catalog, hours: float, thresholds: dict) -> dict:
    """The skew of the last `hours`' traffic from the training data of the version `catalog` belongs to;
    traffic: skew.source's."""
    since, until = window(hours)
    report = skew.report(catalog, traffic(catalog.version, since, until), thresholds)
    return dict(report, since=since, until=until, summary=skew.describe(report))


def router(metrics, traffic, catalog: Callable[[], Catalog | None], skew_thresholds: dict) -> APIRouter:
    """metrics: online_metrics.source's; traffic: skew.source's; catalog(): the serving model's, or None
    before one is loaded."""
    api = APIRouter()
    catalog_size = lambda: len(catalog().items) if catalog() else None  # noqa: E731

    @api.get("/monitor/online")
    async def online(
        hours: float = Query(DEFAULT_HOURS, gt=0, le=24 * 90),
        k: int = Query(DEFAULT_K, ge=1, le=100),
        metric: str = Query("ctr", pattern="^(ctr|conversion)$"),
    ):
        """Click-through and conversion at k, coverage and share of fallbacks per model version and variant
        (the served lists joined with the feedback naming their request_id), and the A/B report."""
        return await run_in_threadpool(online_report, metrics, hours, k, metric, catalog_size())

    @api.get("/monitor/skew")
    async def skew_from_training(hours: float = Query(DEFAULT_HOURS, gt=0, le=24 * 90)):
        """L-infinity distance and Jensen-Shannon divergence of the item and category distributions of the
        impressions of the version serving, and of the feedback, from that version's training data."""
        serving = catalog()
        if serving is None:
            raise HTTPException(503, "no model version loaded yet")
        return await run_in_threadpool(skew_report, traffic, serving, hours, skew_thresholds)

    return api


class OnlineMetricsCollector:
    """/metrics gauges recsys_online_{requests,ctr,conversion,coverage,fallback_share}{model_version,variant},
    computed at each scrape over the last DEFAULT_HOURS at k DEFAULT_K, and
    recsys_skew_distance{model_version,source,feature,comparator} with recsys_skew_threshold{comparator}."""

    def __init__(self, metrics, traffic, catalog: Callable[[], Catalog | None], skew_thresholds: dict):
        self.metrics, self.traffic, self.catalog, self.skew_thresholds = (
            metrics,
            traffic,
            catalog,
            skew_thresholds,
        )

    def collect(self):
        yield from self._online()
        serving = self.catalog()
        if serving is not None:
            yield from self._skew(serving)

    def _skew(self, serving: Catalog):
        report = skew_report(self.traffic, serving, DEFAULT_HOURS, self.skew_thresholds)
        distance = GaugeMetricFamily(
            "recsys_skew_distance",
            f"distance of the last {DEFAULT_HOURS} h's served items (source served) or feedback (source "
            "feedback) from the serving version's training data; absent under the events needed",
            labels=["model_version", "source", "feature", "comparator"],
        )
        for s in report["sources"]:
            for d in s["distances"]:
                distance.add_metric(
                    [serving.version, s["source"], d["feature"], d["comparator"]], d["distance"]
                )
        yield distance
        threshold = GaugeMetricFamily(
            "recsys_skew_threshold", "the distance above which it is skew", labels=["comparator"]
        )
        for name, value in sorted(self.skew_thresholds.items()):
            threshold.add_metric([name], value)
        yield threshold

    def _online(self):
        since, until = window(DEFAULT_HOURS)
        serving = self.catalog()
        catalog_size = len(serving.items) if serving else None
        rows = self.metrics(since, until, DEFAULT_K, catalog_size)
        gauges = {
            "requests": "recorded requests",
            "ctr": f"click-through at {DEFAULT_K}",
            "conversion": f"conversion at {DEFAULT_K}",
            "coverage": f"share of the catalog shown at positions <= {DEFAULT_K}",
            "fallback_share": "share of requests answered by the popularity fallback",
        }
        for name, text in gauges.items():
            family = GaugeMetricFamily(
                f"recsys_online_{name}",
                f"{text}, last {DEFAULT_HOURS} h",
                labels=["model_version", "variant"],
            )
            for r in rows:
                value = getattr(r, name)
                if value is not None:
                    family.add_metric([r.model_version, r.variant], value)
            yield family
