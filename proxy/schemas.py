"""The API's request and response bodies: the validation rules and the OpenAPI document come from here."""

import re
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema

import contract

MAX_ID_LENGTH = 256
MAX_EXCLUDED = contract.MAX_EXCLUSIONS  # an older model may take fewer: serving.catalog.Catalog
MAX_BATCH_USERS = 100
MAX_BATCH_EVENTS = 1000

# An id: 1..256 characters, no control characters, not only spaces.
Id = Annotated[
    str,
    StringConstraints(
        strict=True,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f ][^\x00-\x1f\x7f]*$",
    ),
]

TIMESTAMP_YEARS = r"^(19[7-9][0-9]|2[0-9]{3})-"  # 1970..2999: no zone offset takes it out of datetime's range


def _date_time_text(value):
    """Only date-time text reaches the parser: pydantic would read numbers and digit strings as Unix time."""
    if not isinstance(value, str) or not re.match(r"[0-9]{4}-", value):
        raise ValueError("expected an ISO 8601 date-time string such as 2024-05-01T12:30:00Z")
    if not re.match(TIMESTAMP_YEARS, value):
        raise ValueError("the year must be from 1970 to 2999")
    return value


Timestamp = Annotated[
    datetime,
    BeforeValidator(_date_time_text),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_YEARS}),
]


def _integral(value):
    """JSON Schema's integer includes 40.0 (a number without fraction), which strict int alone refuses."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Count = Annotated[int, BeforeValidator(_integral)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendRequest(Strict):
    user_id: Id
    num_recommendations: Count = Field(10, ge=1, le=100)
    exclude_item_ids: list[Id] = Field(default_factory=list, max_length=MAX_EXCLUDED)
    exclude_seen: bool = Field(True, description="leave out the items the user already interacted with")


SCORE_DESCRIPTION = (
    "the ranking score, best first; compare it only within one answer. From the model: the cosine of the "
    "user's and the item's vectors plus the item's learned bias (any sign, may exceed 1). With "
    'fallback "popularity": the item\'s share of the training events (0 to 1). In /similar: the cosine of '
    "the two items' vectors (-1 to 1)"
)


class Recommendation(BaseModel):
    item_id: str
    score: float = Field(description=SCORE_DESCRIPTION)
    title: str | None = None
    category: str | None = None


LABEL_DESCRIPTION = (
    'the TF Serving version label asked for ("stable" or "canary"); absent for the in-process model'
)


class RecommendResponse(BaseModel):
    user_id: str
    model_version: str = Field(description="the model version that answered")
    model_label: str | None = Field(None, description=LABEL_DESCRIPTION)
    request_id: str
    fallback: str | None = Field(
        None,
        description='"popularity" when the user has no id in the model '
        "and no history: the most popular items instead",
    )
    degraded: str | None = Field(
        None,
        description='"history unavailable" when the shared store did not answer '
        "in time: the model answered without the user's recent "
        "items, and items they saw may be among the answers",
    )
    recommendations: list[Recommendation]


class BatchRecommendRequest(Strict):
    requests: list[RecommendRequest] = Field(min_length=1, max_length=MAX_BATCH_USERS)


class BatchRecommendResponse(BaseModel):
    results: list[RecommendResponse]


class SimilarResponse(BaseModel):
    item_id: str
    model_version: str = Field(description="the model version that answered")
    model_label: str | None = Field(None, description=LABEL_DESCRIPTION)
    similar: list[Recommendation]


# The contract's interaction types: what the pipeline trains on is what the API accepts.
FeedbackType = Enum("FeedbackType", {t: t for t in contract.INTERACTION_TYPES}, type=str)


class FeedbackEvent(Strict):
    model_config = ConfigDict(
        json_schema_extra={  # declares the rule store_feedback enforces
            "if": {"properties": {"feedback_type": {"const": "rating"}}, "required": ["feedback_type"]},
            "then": {"properties": {"rating": {"type": "number"}}, "required": ["rating"]},
        }
    )

    user_id: Id
    item_id: Id
    feedback_type: FeedbackType = Field(strict=False)  # the JSON string names the member
    rating: float | None = Field(
        None, ge=0, le=10, allow_inf_nan=False, description="required when feedback_type is rating"
    )
    request_id: Id | None = Field(None, description="the request_id of the /recommend answer it reacts to")
    timestamp: Timestamp | None = Field(
        None,
        strict=False,
        description="ISO 8601 (a time without zone is UTC), year 1970 to 2999; default: when received",
    )
    idempotency_key: Id | None = Field(
        None,
        description="the client's unique key for this event (e.g. a UUID): "
        "an event whose key is already stored is not stored "
        "again and is answered with the first one's event_id",
    )


class FeedbackAccepted(BaseModel):
    event_id: str


class BatchFeedbackRequest(Strict):
    events: list[FeedbackEvent] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class BatchFeedbackAccepted(BaseModel):
    event_ids: list[str]


class Error(BaseModel):
    error: str = Field(description="what is wrong, naming the field")


# The web page's reads (proxy/routes/web.py).


class HistoryItem(BaseModel):
    item_id: str
    title: str | None = None
    category: str | None = None


class UserHistory(BaseModel):
    user_id: str
    known: bool = Field(description="the model has this user id in its vocabulary")
    history: list[HistoryItem] = Field(
        description="the items /recommend takes as the user's history, most recent first"
    )
    seen: int = Field(description="how many distinct items /recommend leaves out by default")


class ExampleUsers(BaseModel):
    users: list[str]


class ModelVersion(BaseModel):
    version: str = Field(description="the push time in Unix seconds")
    serving: bool = Field(description="the version the API answers with")
    export_report: dict[str, Any] | None = Field(
        description="assets.extra/export_report.json: training time, ScaNN recall@10 against exact search, "
        "sizes, hyperparameters"
    )
    evaluation: dict[str, Any] | None = Field(
        description="assets.extra/evaluation.json: the pipeline's evaluation against the baselines; null "
        "when the version has none"
    )


class ModelVersions(BaseModel):
    versions: list[ModelVersion] = Field(description="newest first")


Period = Literal["minute", "hour", "day"]
PERIODS = {"minute": (16, 60), "hour": (13, 3600), "day": (10, 86400)}  # ISO timestamp prefix, seconds
MAX_STATS_BUCKETS = 1000


class FeedbackStats(BaseModel):
    bucket: Period
    starts: list[datetime] = Field(description="the start of each period (UTC), oldest first")
    counts: dict[str, list[int]] = Field(
        description="events per interaction type in each period, by their "
        "timestamps; types without events left out"
    )
    totals: dict[str, int] = Field(description="every stored event per interaction type")
