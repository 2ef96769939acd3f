"""/recommend, /recommend/batch and /similar/{item_id}."""

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from starlette.exceptions import HTTPException

from proxy import schemas
from proxy.deps import ModelDep, RecommenderDep
from proxy.errors import ERRORS

router = APIRouter()
# A request may ask for a label itself (a tester, a comparison): it takes precedence over the user's share.
# Not Optional: the OpenAPI document then offers no null, which a header cannot carry.
LabelHeader = Annotated[
    Literal["stable", "canary"],
    Header(
        alias="X-Model-Label", description="the TF Serving version label to answer with (default: the user's)"
    ),
]


def _answering(response_model, responses=ERRORS) -> dict:
    """The options of every route here: the response's model, the errors documented, no null fields."""
    return {"response_model": response_model, "responses": responses, "response_model_exclude_none": True}


@router.post("/recommend", **_answering(schemas.RecommendResponse))
async def recommend(
    body: schemas.RecommendRequest, request: Request, recommender: RecommenderDep, label: LabelHeader = None
):
    """Recommendations for one user; items they interacted with are left out unless exclude_seen is false."""
    return (await recommender.recommend([body], request.state.request_id, label))[0]


@router.post("/recommend/batch", **_answering(schemas.BatchRecommendResponse))
async def recommend_batch(
    body: schemas.BatchRecommendRequest,
    request: Request,
    recommender: RecommenderDep,
    label: LabelHeader = None,
):
    """Recommendations for up to 100 users in one model call."""
    return schemas.BatchRecommendResponse(
        results=await recommender.recommend(body.requests, request.state.request_id, label)
    )


@router.get(
    "/similar/{item_id}", **_answering(schemas.SimilarResponse, {404: {"model": schemas.Error}, **ERRORS})
)
async def similar(
    item_id: Annotated[schemas.Id, Path()],  # (`= Path()` would neither check nor document Id's constraints)
    model: ModelDep,
    recommender: RecommenderDep,
    k: int = Query(10, ge=1, le=100),
    label: LabelHeader = None,
):
    """The items closest to item_id in the model's item space (the "stable" version unless asked
    otherwise)."""
    if item_id not in model.catalog.items:
        raise HTTPException(404, f"item_id: unknown item {item_id!r}")
    similar_items, version, label = await recommender.similar(model, item_id, k, label)
    return schemas.SimilarResponse(
        item_id=item_id, model_version=version, model_label=label, similar=similar_items
    )
