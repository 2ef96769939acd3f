"""/feedback and /feedback/batch: events stored durably before the 202."""

from fastapi import APIRouter
from starlette.exceptions import HTTPException

from proxy import schemas
from proxy.deps import MetricsDep, ModelDep, StoreDep
from proxy.errors import ERRORS

router = APIRouter()


async def store_feedback(events: list[schemas.FeedbackEvent], store, model, metrics) -> list[str]:
    items = model.catalog.items  # the item's category goes with the event into the next training run
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


@router.post("/feedback", status_code=202, response_model=schemas.FeedbackAccepted, responses=ERRORS)
async def feedback(body: schemas.FeedbackEvent, store: StoreDep, model: ModelDep, metrics: MetricsDep):
    """Stores one event durably (202 only after the commit); the user's next recommendation sees it."""
    return schemas.FeedbackAccepted(event_id=(await store_feedback([body], store, model, metrics))[0])


@router.post(
    "/feedback/batch", status_code=202, response_model=schemas.BatchFeedbackAccepted, responses=ERRORS
)
async def feedback_batch(
    body: schemas.BatchFeedbackRequest, store: StoreDep, model: ModelDep, metrics: MetricsDep
):
    """Stores up to 1000 events in one transaction."""
    return schemas.BatchFeedbackAccepted(event_ids=await store_feedback(body.events, store, model, metrics))
