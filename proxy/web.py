"""The web page to try and watch the recommender (proxy/static/, served at /) and the JSON it reads besides
/recommend, /similar and /feedback: example users, a user's history, the pushed versions' reports, feedback
counts over time."""

import itertools
import json
import math
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated

import tensorflow as tf
from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

import contract
from proxy import schemas
from proxy.feedback_store import utc_iso
from proxy.model_watcher import ServingModel
from serving.catalog import Catalog, pushed_versions

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
# The page's files, open without the API key: the page asks for the key when a call needs it.
PAGE_FILES = {"/": "index.html", "/static/app.js": "app.js", "/static/style.css": "style.css"}
ERRORS = {422: {"model": schemas.Error}, 503: {"model": schemas.Error}}
USERS_LOOKED_AT = 1000  # users with a history that /users looks through for ones the model knows


class VersionReports:
    """The reports in each pushed version's assets.extra/, read once: a version is complete once pushed
    (the Pusher writes its saved_model.pb last) and never changes."""

    def __init__(self, model_base: str):
        self.model_base = model_base
        self._reports: dict[str, tuple] = {}

    def get(self, version: str) -> tuple[dict | None, dict | None]:
        """(export report, evaluation) of a version, None for a file it does not have."""
        if version not in self._reports:
            extra = os.path.join(self.model_base, version, contract.EXTRA_DIR)
            self._reports[version] = tuple(
                _read_json(os.path.join(extra, name))
                for name in (contract.REPORT_FILE, contract.EVALUATION_FILE)
            )
        return self._reports[version]


def _read_json(path: str) -> dict | None:
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as fh:
        return json.load(fh)


def _history_item(catalog: Catalog, item_id: str) -> schemas.HistoryItem:
    item = catalog.items.get(item_id)
    return schemas.HistoryItem(
        item_id=item_id, title=item.title if item else None, category=item.category if item else None
    )


def _page_file(name: str):
    async def page_file():
        # no-cache: the browser revalidates (ETag), so a new release's page is never mixed with an old script
        return FileResponse(os.path.join(STATIC_DIR, name), headers={"Cache-Control": "no-cache"})

    return page_file


def page() -> APIRouter:
    """The page's files (open: the page asks for the API key itself)."""
    files = APIRouter()
    for path, name in PAGE_FILES.items():
        files.add_api_route(path, _page_file(name), methods=["GET"], include_in_schema=False)
    return files


def router(model_base: str, serving: Callable[[], ServingModel], store) -> APIRouter:
    """The endpoints the page calls. serving() gives the current model (or raises for a 503); `store` holds the
    histories and the feedback (proxy/online_store.py)."""
    api = APIRouter()
    reports = VersionReports(model_base)

    @api.get("/users", response_model=schemas.ExampleUsers, responses=ERRORS)
    async def example_users(limit: int = Query(12, ge=1, le=100)):
        """A few users to try: ones the model knows with a history here, else any the model knows."""
        known = serving().catalog.known_users
        users = [u for u in await store.users_with_history(USERS_LOOKED_AT) if u in known][:limit]
        return schemas.ExampleUsers(users=sorted(users or itertools.islice((u for u in known if u), limit)))

    @api.get("/users/{user_id}/history", response_model=schemas.UserHistory, responses=ERRORS)
    async def user_history(user_id: Annotated[schemas.Id, Path()]):  # (`= Path()` would skip Id's checks)
        """The user's recent items as /recommend sees them."""
        catalog = serving().catalog
        [(history, seen)] = await store.histories([user_id])
        return schemas.UserHistory(
            user_id=user_id,
            known=user_id in catalog.known_users,
            history=[_history_item(catalog, i) for i in reversed(history)],
            seen=len(seen),
        )

    def version_report(version: str, serving_version: str) -> schemas.ModelVersion:
        export_report, evaluation = reports.get(version)
        return schemas.ModelVersion(
            version=version,
            serving=version == serving_version,
            export_report=export_report,
            evaluation=evaluation,
        )

    @api.get("/model", response_model=schemas.ModelVersion, responses=ERRORS)
    async def model():
        """The serving version's export report and evaluation."""
        version = serving().catalog.version
        return await run_in_threadpool(version_report, version, version)

    @api.get("/model/versions", response_model=schemas.ModelVersions, responses=ERRORS)
    async def model_versions(limit: int = Query(20, ge=1, le=1000)):
        """The newest pushed versions under the model base with their reports, newest first."""
        current = serving().catalog.version
        return schemas.ModelVersions(
            versions=await run_in_threadpool(
                lambda: [version_report(v, current) for v in pushed_versions(model_base)[::-1][:limit]]
            )
        )

    @api.get("/feedback/stats", response_model=schemas.FeedbackStats, responses=ERRORS)
    async def feedback_stats(
        bucket: schemas.Period = Query("minute"), buckets: int = Query(60, ge=1, le=schemas.MAX_STATS_BUCKETS)
    ):
        """Feedback events per interaction type in each of the last `buckets` periods (UTC, by the events'
        timestamps, the current period last), and every stored event per type."""
        chars, seconds = schemas.PERIODS[bucket]
        first = (math.floor(time.time() / seconds) - buckets + 1) * seconds
        starts = [datetime.fromtimestamp(first + n * seconds, timezone.utc) for n in range(buckets)]
        position = {utc_iso(start)[:chars]: n for n, start in enumerate(starts)}
        rows = await store.count_by_period(list(position))
        counts = {}
        for period, kind, count in rows:
            if period in position:  # events timestamped in the future are left out
                counts.setdefault(kind, [0] * buckets)[position[period]] = count
        return schemas.FeedbackStats(
            bucket=bucket, starts=starts, counts=counts, totals=await store.count_by_type()
        )

    return api
