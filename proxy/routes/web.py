"""The web page to try and watch the recommender (proxy/static/, served at /) and the JSON it reads besides
/recommend, /similar and /feedback: example users, a user's history, the pushed versions' reports, feedback
counts over time."""

import itertools
import json
import math
import os
import time
from datetime import datetime, timezone
from typing import Annotated

import tensorflow as tf
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

import contract
from proxy import schemas
from proxy.deps import ModelDep, SettingsDep, StoreDep
from proxy.feedback_store import utc_iso
from serving.catalog import Catalog, pushed_versions

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
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
            report, evaluation = (
                _read_json(os.path.join(extra, name))
                for name in (contract.REPORT_FILE, contract.EVALUATION_FILE)
            )
            # The artifact locations they name are the pipeline's storage, not the API's to show.
            for other_model in ("averaged_with", "warm_started_from"):
                if report and report.get(other_model):
                    report[other_model].pop("model_dir", None)
            if evaluation:
                evaluation.pop("baseline_model", None)
            self._reports[version] = report, evaluation
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


# The page's files (open: the page asks for the API key itself).
page = APIRouter()
for path, name in PAGE_FILES.items():
    page.add_api_route(path, _page_file(name), methods=["GET"], include_in_schema=False)
# The endpoints the page calls.
router = APIRouter()


@router.get("/users", response_model=schemas.ExampleUsers, responses=ERRORS)
async def example_users(model: ModelDep, store: StoreDep, limit: int = Query(12, ge=1, le=100)):
    """A few users to try: ones the model knows with a history here, else any the model knows."""
    known = model.catalog.known_users
    users = [u for u in await store.users_with_history(USERS_LOOKED_AT) if u in known][:limit]
    return schemas.ExampleUsers(users=sorted(users or itertools.islice((u for u in known if u), limit)))


@router.get("/users/{user_id}/history", response_model=schemas.UserHistory, responses=ERRORS)
async def user_history(
    user_id: Annotated[schemas.Id, Path()], model: ModelDep, store: StoreDep
):  # (`= Path()` would skip Id's checks)
    """The user's recent items as /recommend sees them."""
    catalog = model.catalog
    [(history, seen)] = await store.histories([user_id])
    return schemas.UserHistory(
        user_id=user_id,
        known=user_id in catalog.known_users,
        history=[_history_item(catalog, i) for i in reversed(history)],
        seen=len(seen),
    )


def _version_report(reports: VersionReports, version: str, serving_version: str) -> schemas.ModelVersion:
    export_report, evaluation = reports.get(version)
    return schemas.ModelVersion(
        version=version,
        serving=version == serving_version,
        export_report=export_report,
        evaluation=evaluation,
    )


async def _reports(request: Request) -> VersionReports:
    return (
        request.app.state.reports
    )  # create_app's, one per app: a version's reports never change once pushed


ReportsDep = Annotated[VersionReports, Depends(_reports)]


@router.get("/model", response_model=schemas.ModelVersion, responses=ERRORS)
async def model_report(model: ModelDep, reports: ReportsDep):
    """The serving version's export report and evaluation."""
    version = model.catalog.version
    return await run_in_threadpool(_version_report, reports, version, version)


@router.get("/model/versions", response_model=schemas.ModelVersions, responses=ERRORS)
async def model_versions(
    model: ModelDep, reports: ReportsDep, settings: SettingsDep, limit: int = Query(20, ge=1, le=1000)
):
    """The newest pushed versions under the model base with their reports, newest first."""
    current = model.catalog.version
    newest = pushed_versions(settings.model_base)[::-1][:limit]
    return schemas.ModelVersions(
        versions=await run_in_threadpool(lambda: [_version_report(reports, v, current) for v in newest])
    )


@router.get("/feedback/stats", response_model=schemas.FeedbackStats, responses=ERRORS)
async def feedback_stats(
    store: StoreDep,
    bucket: schemas.Period = Query("minute"),
    buckets: int = Query(60, ge=1, le=schemas.MAX_STATS_BUCKETS),
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
