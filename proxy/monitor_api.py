"""The online metrics and the A/B report over HTTP (GET /monitor/online) and in /metrics (gauges per model
version and variant over the last DEFAULT_HOURS)."""

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Query
from prometheus_client.core import GaugeMetricFamily
from starlette.concurrency import run_in_threadpool

from proxy import ab_report, online_metrics
from proxy.feedback_store import utc_iso

DEFAULT_HOURS = 24
DEFAULT_K = 10


def window(hours: float, until: datetime | None = None) -> tuple[str, str]:
    until = until or datetime.now(timezone.utc)
    return utc_iso(until - timedelta(hours=hours)), utc_iso(until + timedelta(seconds=1))


def online_report(db_path: str, hours: float, k: int, metric: str, catalog_size: int | None) -> dict:
    """The metrics per version and variant over the last `hours`, and the A/B report between the variants."""
    since, until = window(hours)
    rows = online_metrics.local_metrics(db_path, since, until, k, catalog_size)
    ab = ab_report.report(rows, metric=metric)
    return {
        "since": since,
        "until": until,
        "k": k,
        "versions": [r.as_dict() for r in rows],
        "ab": dict(ab.as_dict(), summary=ab_report.describe(ab)),
    }


def router(db_path: str, catalog_size: Callable[[], int | None]) -> APIRouter:
    """catalog_size(): the serving model's item count (for coverage), or None."""
    api = APIRouter()

    @api.get("/monitor/online")
    async def online(
        hours: float = Query(DEFAULT_HOURS, gt=0, le=24 * 90),
        k: int = Query(DEFAULT_K, ge=1, le=100),
        metric: str = Query("ctr", pattern="^(ctr|conversion)$"),
    ):
        """Click-through and conversion at k, coverage and share of fallbacks per model version and variant
        (the served lists joined with the feedback naming their request_id), and the A/B report."""
        return await run_in_threadpool(online_report, db_path, hours, k, metric, catalog_size())

    return api


class OnlineMetricsCollector:
    """/metrics gauges recsys_online_{requests,ctr,conversion,coverage,fallback_share}{model_version,variant},
    computed at each scrape over the last DEFAULT_HOURS at k DEFAULT_K."""

    def __init__(self, db_path: str, catalog_size: Callable[[], int | None]):
        self.db_path, self.catalog_size = db_path, catalog_size

    def collect(self):
        since, until = window(DEFAULT_HOURS)
        rows = online_metrics.local_metrics(self.db_path, since, until, DEFAULT_K, self.catalog_size())
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
