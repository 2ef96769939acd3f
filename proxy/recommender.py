"""What /recommend and /similar do besides HTTP: histories from the store, the model query, joining concurrent
requests into one model call per version label, the popularity fallback, and the answers' shape."""

import asyncio
import hashlib
import logging

from starlette.concurrency import run_in_threadpool

from proxy import schemas
from proxy.batcher import Batcher
from proxy.errors import Unavailable
from proxy.metrics import ApiMetrics
from proxy.model_watcher import ModelWatcher, ServingModel
from proxy.redis_store import StoreUnavailable
from proxy.settings import Settings
from serving import query
from serving.tf_serving import BackendUnavailable

log = logging.getLogger("proxy.app")
STABLE, CANARY = "stable", "canary"


def user_bucket(user_id: str) -> float:
    """Where the user falls in [0, 1): the same in every API instance and after restarts."""
    return int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:8], "big") / 2**64


def call_backend(model: ServingModel, metrics: ApiMetrics, method: str, label: str | None, *args) -> tuple:
    """(answer, the version that answered), read in the calling thread, where a TF Serving client keeps it."""
    call = getattr(model.backend, method)
    with metrics.model_call_seconds.labels(method).time():
        answer = call(*args, label=label) if label else call(*args)
    if label:
        metrics.answered_by_label[label] = model.version
    return answer, model.version


def recommendation(catalog, item_id: str, score: float) -> schemas.Recommendation:
    item = catalog.items.get(item_id)
    return schemas.Recommendation(
        item_id=item_id,
        score=round(score, 6),
        title=item.title if item else None,
        category=item.category if item else None,
    )


class Recommender:
    def __init__(self, settings: Settings, watcher: ModelWatcher, store, metrics: ApiMetrics, impressions):
        self.settings, self.watcher, self.store, self.metrics = settings, watcher, store, metrics
        self.impressions = (
            impressions  # proxy/impressions.py: a sample of the answers, for the online metrics
        )
        # TF Serving batches by itself; the in-process model shares the event loop's cores (proxy/batcher.py)
        self.batcher = Batcher(self._recommend_together, halves=not settings.backend)

    def serving(self) -> ServingModel:
        if self.watcher.current is None:
            raise Unavailable("no model loaded yet")
        return self.watcher.current

    async def call_model(self, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.settings.timeout)
        except (asyncio.TimeoutError, BackendUnavailable) as e:
            raise Unavailable(f"model backend did not answer: {e or 'timed out'}") from e

    def label_for(self, user_id: str, asked: str | None) -> str | None:
        if not self.settings.version_labels:
            return None
        return asked or (CANARY if user_bucket(user_id) < self.settings.canary_share else STABLE)

    def _recommend_together(self, queries: list[tuple]) -> list[tuple]:
        """The queries of concurrent requests, (user_id, history, exclude, k, label) each: one model call per
        label."""
        model = self.serving()
        self.metrics.batch_size.observe(len(queries))
        answers = [None] * len(queries)
        for label in dict.fromkeys(q[4] for q in queries):
            indices = [i for i, q in enumerate(queries) if q[4] == label]
            users, histories, excludes, ks, _ = zip(*(queries[i] for i in indices))
            results, version = call_backend(
                model, self.metrics, "recommend", label, list(users), list(histories), list(excludes), max(ks)
            )
            for i, ranked in zip(indices, results):
                answers[i] = (ranked, version)
        return answers

    async def _histories(self, reqs: list[schemas.RecommendRequest]) -> tuple[list, list, str | None]:
        """Each user's (history, seen) from the store, and the answers' `degraded` flag."""
        try:
            histories, seen = zip(*await self.store.histories([r.user_id for r in reqs]))
            return list(histories), list(seen), None
        except StoreUnavailable as e:  # answer from the model alone rather than not at all
            log.warning("recommending without histories: %s", e)
            self.metrics.degraded.inc(len(reqs))
            return [[]] * len(reqs), [[]] * len(reqs), "history unavailable"

    async def recommend(
        self, reqs: list[schemas.RecommendRequest], request_id: str, asked_label: str | None
    ) -> list[schemas.RecommendResponse]:
        """request_id: the request's (RequestLog); with several users each answer's is request_id-<n>."""
        model = self.serving()
        catalog = model.catalog
        histories, seen, flag = await self._histories(reqs)
        excludes = [
            query.exclusions(r.exclude_item_ids, seen[i] if r.exclude_seen else [], catalog.max_exclusions)
            for i, r in enumerate(reqs)
        ]
        personal = [i for i, r in enumerate(reqs) if histories[i] or r.user_id in catalog.known_users]
        labels = [self.label_for(r.user_id, asked_label) for r in reqs]
        submitted = (
            self.batcher.submit(
                (reqs[i].user_id, histories[i], excludes[i], reqs[i].num_recommendations, labels[i])
            )
            for i in personal
        )
        answers = dict(zip(personal, await self.call_model(asyncio.gather(*submitted))))
        responses = [
            self._response(r, answers.get(i), catalog, excludes[i], labels[i], flag, request_id, i, len(reqs))
            for i, r in enumerate(reqs)
        ]
        self.impressions.record(responses)
        return responses

    def _response(
        self, r, answer, catalog, exclude, label, flag, request_id, i, n
    ) -> schemas.RecommendResponse:
        fallback = None if answer else "popularity"
        if fallback:
            self.metrics.fallbacks.inc()
        ranked, version = answer or (catalog.popular(r.num_recommendations, set(exclude)), catalog.version)
        return schemas.RecommendResponse(
            user_id=r.user_id,
            model_version=version,
            model_label=None if fallback else label,
            fallback=fallback,
            request_id=request_id if n == 1 else f"{request_id}-{i}",
            degraded=flag,
            recommendations=[
                recommendation(catalog, item, score) for item, score in ranked[: r.num_recommendations]
            ],
        )

    async def similar(self, model: ServingModel, item_id: str, k: int, label: str | None):
        """The k nearest items and the version that answered."""
        label = (label or STABLE) if self.settings.version_labels else None
        [ranked], version = await self.call_model(
            run_in_threadpool(call_backend, model, self.metrics, "similar", label, [item_id], k)
        )
        return [recommendation(model.catalog, i, s) for i, s in ranked], version, label
