"""Every training hyperparameter, in one place, with the defaults the pipeline uses."""

import dataclasses
from typing import Annotated, Literal

import pydantic

import contract

PositiveInt = Annotated[int, pydantic.Field(ge=1)]
# negatives="auto" above this many items: in-batch negatives, whose step costs the least and does not grow
# with the catalog (sampled negatives ranked a little higher on synthetic catalogs of 1e5 and 1e6 items, at
# two to three times the epoch: docs/experiments.md).
SAMPLED_SOFTMAX_MAX_ITEMS = 20_000


# A pydantic dataclass: every value has its field's type, strictly ("2" is no int, 1 no bool), on
# construction.
@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(strict=True))
class HParams:
    # Wide embeddings trained briefly ranked better than narrow ones trained longer, at about the same
    # training time (docs/experiments.md).
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 1024
    embedding_dim: PositiveInt = 512
    learning_rate: float = 0.2  # Adagrad
    # Normalized embeddings scored by cosine / temperature.
    temperature: float = 0.2
    # Share of training events whose user id is replaced by the out-of-vocabulary bucket, so that
    # bucket learns to stand for "a user we only know by their history" (new users at serving time).
    user_id_dropout: float = 0.1
    # Share of training events whose history is left out, so the user embedding must carry the user's
    # whole taste on its own too (a known user's history is only a sample of it).
    history_dropout: float = 0.5
    # The history's weight beside a known user's embedding in the query (a new user's history weighs 1):
    # the embedding is learned from all of the user's events, the history is their latest few. At 1 the
    # recent items pulled known users away from their taste (docs/experiments.md); above 0 a click still
    # changes the next recommendations.
    known_user_history_weight: float = 0.25
    # A learned bias per item beside the cosine (in serving: cosine + temperature * bias).
    item_bias: bool = True
    # Loss weights: retrieval (softmax, negatives below) and rating head.
    retrieval_weight: float = 1.0
    rating_weight: float = 0.0  # the rating head cost ranking quality (docs/experiments.md)
    # "all_items": softmax over the whole catalog each step (exact; its cost grows with the catalog);
    # "sampled": softmax over each event's target and sampled_negatives items drawn by popularity for the
    # batch, with the logQ correction (its cost grows with sampled_negatives, not the catalog); "in_batch":
    # the other targets of the batch are the negatives, with the logQ correction unless logq_correction is
    # off.
    # "auto" (negatives_for): all_items while sampling would save less than half the softmax (at most
    # 2 x sampled_negatives items), sampled up to SAMPLED_SOFTMAX_MAX_ITEMS, in_batch above. On MovieLens
    # (9.7k items) sampled ranked at EASE's level as the exact softmax did, in about half its training time
    # (docs/experiments.md).
    negatives: Literal["auto", "all_items", "sampled", "in_batch"] = "auto"
    sampled_negatives: PositiveInt = 4096
    logq_correction: bool = True
    # The softmax's matmuls (all items or the sampled ones), most of a step's work, in bfloat16 where the
    # hardware computes it natively (model.native_bfloat16; elsewhere TensorFlow emulates it, slower, and
    # float32 is kept). It trained the same model as float32 to the fourth digit of nDCG@10 in the screens,
    # in about four fifths of the time (docs/experiments.md).
    bfloat16_softmax: bool = True
    # Export: results per query, and how many items a query may ask to leave out (contract.py says why).
    top_k: int = contract.TOP_K
    max_exclusions: int = contract.MAX_EXCLUSIONS
    # ScaNN index (leaves are sqrt(#items) unless set); the check against brute force uses this many queries.
    scann_leaves_to_search_ratio: float = 0.25
    scann_check_queries: int = 200
    min_scann_recall: float = 0.9  # below it the Trainer fails and nothing is pushed
    seed: int = 42
    # How the pushed model is made once the candidate (trained without the eval split) is judged
    # (trainer_module/refit.py): "none": the candidate is pushed; "warm_start": the candidate trained
    # refit_epochs more on every event; "full": the recipe trained again on every event, serving the mean of
    # its scores and the candidate's. The full refit costs a second training run, the warm start a fifth of
    # one, but the warm start ranked below EASE on two seeds of three where the full refit's mean ranked
    # above it in every run (docs/experiments.md).
    refit: Literal["none", "warm_start", "full"] = "full"
    refit_epochs: PositiveInt = 2

    def negatives_for(self, num_items: int) -> str:
        """The negatives the model trains with on a catalog of num_items items: "auto" resolved."""
        if self.negatives != "auto":
            return self.negatives
        if num_items <= 2 * self.sampled_negatives:
            return "all_items"
        return "sampled" if num_items <= SAMPLED_SOFTMAX_MAX_ITEMS else "in_batch"

    @classmethod
    def from_overrides(cls, overrides: dict | None) -> "HParams":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides or {}) - names
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)}; known: {sorted(names)}")
        try:
            return cls(**(overrides or {}))
        except pydantic.ValidationError as e:
            raise ValueError(
                "; ".join(
                    f"{'.'.join(map(str, error['loc']))}: {error['msg']}, got {error['input']!r}"
                    for error in e.errors()
                )
            ) from None
