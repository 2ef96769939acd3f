"""Every training hyperparameter, in one place, with the defaults the pipeline uses."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class HParams:
    epochs: int = 2  # more overfits: on MovieLens the validation loss rises after the second (BENCHMARKS.md)
    batch_size: int = 1024
    embedding_dim: int = 64
    learning_rate: float = 0.05
    # Normalized embeddings scored by cosine / temperature.
    temperature: float = 0.2
    # Share of training events whose user id is replaced by the out-of-vocabulary bucket, so that
    # bucket learns to stand for "a user we only know by their history" (new users at serving time).
    user_id_dropout: float = 0.1
    # Share of training events whose history is left out, so the user embedding must carry the user's
    # whole taste on its own too (a known user's history is only a sample of it).
    history_dropout: float = 0.5
    # A learned bias per item beside the cosine (in serving: cosine + temperature * bias).
    item_bias: bool = True
    # Loss weights: retrieval (softmax, negatives below) and rating head.
    retrieval_weight: float = 1.0
    rating_weight: float = 0.1
    # "all_items": softmax over the whole catalog each step (exact; for catalogs up to ~1e5 items);
    # "in_batch": the other targets of the batch are the negatives (scales to any catalog), with the logQ
    # popularity correction unless logq_correction is off.
    negatives: str = "all_items"
    logq_correction: bool = True
    # Export: results per query, and how many items a query may ask to leave out.
    top_k: int = 100
    max_exclusions: int = 400
    # ScaNN index (leaves are sqrt(#items) unless set); the check against brute force uses this many queries.
    scann_leaves_to_search_ratio: float = 0.25
    scann_check_queries: int = 200
    min_scann_recall: float = 0.9  # below it the Trainer fails and nothing is pushed
    seed: int = 42

    @classmethod
    def from_overrides(cls, overrides: dict | None) -> "HParams":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides or {}) - names
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**(overrides or {}))
