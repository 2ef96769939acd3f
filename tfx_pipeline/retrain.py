"""Retraining when the data moves (`recsys pipeline retrain`, for cron): starts a pipeline run when enough new
feedback arrived since the last run it started, or when the new feedback's category or interaction-type
distribution drifted from the last run's training statistics (tfx_pipeline/components/drift.py's comparators
and thresholds; not the item distribution, which a few hundred events over thousands of items cannot
estimate).
The run exports the feedback into the data directory first; the new model replaces the served one only through
the Evaluator's blessing, as in any run.

Where it counts: locally the API's feedback database (SQLite), remembering in WORKDIR/retrain-state.json the
arrival number (seq) up to which the last run it started has read; on Google Cloud (`--config`) the feedback
table in BigQuery, remembering in <pipeline root>/retrain-state.json the event time up to which the last run
it submitted to Vertex AI counted (events whose `timestamp` is older than that when they arrive are not
counted). The decision (decide) is the same code in both."""

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd

import contract
from tfx_pipeline.components import drift

STATE_FILE = "retrain-state.json"
MIN_DRIFT_EVENTS = 100  # fewer new events than this: their distributions are noise, not evidence of drift
FEATURES = (contract.CATEGORY, contract.INTERACTION_TYPE)


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str
    new_events: int
    drifted: list[dict]


def decide(
    new_events: int,
    min_new_events: int,
    distances: list[dict] | None,
    not_compared: str = f"drift not checked under {MIN_DRIFT_EVENTS} new events",
) -> Decision:
    """distances: drift.compare's of the new events against the last run's statistics (None: not compared,
    for the reason `not_compared`)."""
    drifted = [d for d in distances or [] if d["drift"]]
    if new_events >= min_new_events:
        return Decision(True, f"{new_events} new events (at least {min_new_events})", new_events, drifted)
    if drifted:
        report = {"previous": "", "distances": drifted}
        return Decision(
            True, f"{new_events} new events drifted: {drift.describe(report)}", new_events, drifted
        )
    compared = "" if distances is not None else f"; {not_compared}"
    return Decision(
        False, f"{new_events} new events (fewer than {min_new_events}), no drift{compared}", new_events, []
    )


def last_statistics(workdir: str):
    """The train split's statistics of the newest StatisticsGen output in WORKDIR's metadata, or None."""
    from tfx.components.statistics_gen import stats_artifact_utils
    from tfx.types import standard_artifacts
    from tfx.types.artifact_utils import deserialize_artifact

    from tfx_pipeline.metadata import open_store

    path = os.path.join(workdir, "metadata.sqlite")
    if not os.path.exists(path):
        return None
    store = open_store(path, read_only=True)
    # StatisticsGen's, with splits (Transform's, in runs from before its statistics were off, have none)
    found = [
        a
        for a in store.get_artifacts_by_type(standard_artifacts.ExampleStatistics.TYPE_NAME)
        if drift.SPLIT in json.loads(a.properties["split_names"].string_value or "[]")
    ]
    if not found:
        return None
    [artifact_type] = store.get_artifact_types_by_id([found[0].type_id])
    newest = deserialize_artifact(artifact_type, max(found, key=lambda a: a.id))
    return stats_artifact_utils.load_statistics(newest, drift.SPLIT).proto()


def read_state(workdir: str) -> int:
    path = os.path.join(workdir, STATE_FILE)
    if not os.path.exists(path):
        return 0
    with open(path) as fh:
        return json.load(fh)["feedback_seq"]


def write_state(workdir: str, seq: int):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, STATE_FILE + ".tmp"), "w") as fh:
        json.dump({"feedback_seq": seq}, fh)
    os.replace(os.path.join(workdir, STATE_FILE + ".tmp"), os.path.join(workdir, STATE_FILE))


def decide_on(events: list[dict], workdir: str, min_new_events: int, thresholds: dict) -> Decision:
    """The decision for the feedback events (the feedback store's rows) since the last run it started."""
    import tensorflow_data_validation as tfdv

    distances = None
    previous = last_statistics(workdir) if len(events) >= MIN_DRIFT_EVENTS else None
    if previous is not None:
        frame = pd.DataFrame(  # as the examples: dislikes are not examples
            [(e["category"], e["interaction_type"]) for e in events if e["interaction_type"] != "dislike"],
            columns=list(FEATURES),
        )
        distances = drift.compare(
            tfdv.generate_statistics_from_dataframe(frame), previous, thresholds, FEATURES
        )
    return decide(len(events), min_new_events, distances)


# On Google Cloud: the feedback table's events in (@since, @until], by event time.
NEW_EVENTS_BIGQUERY = (
    "SELECT COUNT(*) AS new_events FROM `{feedback_table}` WHERE timestamp > @since AND timestamp <= @until"
)
CLOUD_NOT_COMPARED = "drift is checked in the run (its DriftCheck, the config's drift: keys)"


def cloud_state_path(pipeline_root: str) -> str:
    return f"{pipeline_root}/{STATE_FILE}"


def read_cloud_state(pipeline_root: str, window_days: int, now: datetime) -> datetime:
    """The event time up to which the last submitted run counted; before any, the start of the training
    window."""
    import tensorflow as tf

    path = cloud_state_path(pipeline_root)
    if not tf.io.gfile.exists(path):
        return now - timedelta(days=window_days)
    with tf.io.gfile.GFile(path) as fh:
        return datetime.fromisoformat(json.load(fh)["feedback_until"])


def write_cloud_state(pipeline_root: str, until: datetime):
    import tensorflow as tf

    with tf.io.gfile.GFile(cloud_state_path(pipeline_root), "w") as fh:
        json.dump({"feedback_until": until.isoformat()}, fh)


def bigquery_runner(project: str, credentials=None):
    """query(sql, params) -> rows over BigQuery, the parameters as TIMESTAMP query parameters."""
    from google.cloud import bigquery

    client = bigquery.Client(project=project, credentials=credentials)

    def query(sql: str, params: dict) -> list[tuple]:
        job_config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter(k, "TIMESTAMP", v) for k, v in params.items()]
        )
        return [tuple(row.values()) for row in client.query(sql, job_config=job_config).result()]

    return query


def decide_in_bigquery(query, feedback_table: str, since: datetime, until: datetime, min_new_events: int):
    """The decision for the feedback table's events in (since, until]; query(sql, params) runs the SQL."""
    [(new_events,)] = query(
        NEW_EVENTS_BIGQUERY.format(feedback_table=feedback_table), {"since": since, "until": until}
    )
    return decide(int(new_events), min_new_events, None, CLOUD_NOT_COMPARED)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
