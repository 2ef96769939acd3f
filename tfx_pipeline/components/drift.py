"""Drift: each run compares its examples' statistics with the previous run's, on the distributions of the
item, the category and the interaction type, with TFDV's drift comparators (L-infinity distance and
approximate Jensen-Shannon divergence), and records the distances in its DriftCheck artifact (drift.json, one
per run).

A distance above its threshold is drift: it is printed in the run's output and, with stop_on_drift, DriftGate
fails the run before Transform, so nothing is trained or pushed. The failed run's statistics are the next
run's "previous": a second run over the same data is how a person accepts the change."""

import json
import os

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import io_utils

import contract
from serving import distances
from tfx_pipeline.components import validation
from tfx_pipeline.data.local_source import DataError

FEATURES = (contract.ITEM_ID, contract.CATEGORY, contract.INTERACTION_TYPE)
SPLIT = "train"
REPORT_FILE = "drift.json"
# comparator -> (the schema field that sets it, the measurement type TFDV reports)
COMPARATORS = {
    "l_infinity": ("infinity_norm", anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY),
    "jensen_shannon": (
        "jensen_shannon_divergence",
        anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE,
    ),
}
# The thresholds are the API's skew check's too (proxy/skew.py).
DEFAULT_THRESHOLDS_JSON = json.dumps(distances.DEFAULT_THRESHOLDS)


class DataDrift(DataError):
    """The examples drifted from the previous run's beyond a threshold, and the run is configured to stop."""


def compare(current, previous, thresholds: dict, features: tuple[str, ...] = FEATURES) -> list[dict]:
    """The distances of `features` between two DatasetFeatureStatisticsList: one entry per feature and
    comparator, {"feature", "comparator", "distance", "threshold", "drift"}."""
    schema = validation.contract_schema()
    for feature in schema.feature:
        if feature.name in features:
            for name, threshold in thresholds.items():
                getattr(feature.drift_comparator, COMPARATORS[name][0]).threshold = threshold
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=previous)
    kinds = {kind: name for name, (_, kind) in COMPARATORS.items()}
    found = []
    for info in anomalies.drift_skew_info:
        for m in info.drift_measurements:
            if m.type in kinds:
                found.append(
                    {
                        "feature": ".".join(info.path.step),
                        "comparator": kinds[m.type],
                        "distance": round(m.value, 6),
                        "threshold": m.threshold,
                        "drift": m.value > m.threshold,
                    }
                )
    return sorted(found, key=lambda d: (d["feature"], d["comparator"]))


def describe(report: dict) -> str:
    """The report's lines for the run's output."""
    if report["previous"] is None:
        return "drift: no previous run to compare with"
    drifted = [d for d in report["distances"] if d["drift"]]
    if not drifted:
        return (
            "drift: none over the thresholds ("
            + ", ".join(f"{d['feature']} {d['comparator']} {d['distance']:.4f}" for d in report["distances"])
            + ")"
        )
    return "drift since the previous run: " + "; ".join(
        f"{d['feature']} {d['comparator']} distance {d['distance']:.4f} > threshold {d['threshold']}"
        for d in drifted
    )


def read_report(drift_uri: str) -> dict:
    with open(os.path.join(drift_uri, REPORT_FILE)) as fh:
        return json.load(fh)


@tfx.dsl.components.component
def DriftCheck(
    statistics: tfx.dsl.components.InputArtifact[standard_artifacts.ExampleStatistics],
    drift: tfx.dsl.components.OutputArtifact[standard_artifacts.ExampleAnomalies],
    previous_statistics: tfx.dsl.components.InputArtifact[  # None: the first run
        standard_artifacts.ExampleStatistics
    ] = None,
    thresholds: tfx.dsl.components.Parameter[str] = DEFAULT_THRESHOLDS_JSON,
):
    """Writes drift.json ({"previous": its statistics' uri or None, "distances": [...], "drift": bool})."""
    report = {"previous": None, "distances": [], "drift": False}
    if previous_statistics is not None:  # the same artifact when StatisticsGen was cached: distances 0
        report["previous"] = previous_statistics.uri
        report["distances"] = compare(
            stats_artifact_utils.load_statistics(statistics, SPLIT).proto(),
            stats_artifact_utils.load_statistics(previous_statistics, SPLIT).proto(),
            distances.check_thresholds(json.loads(thresholds)),
        )
        report["drift"] = any(d["drift"] for d in report["distances"])
    drift.split_names = '["train"]'
    io_utils.write_string_file(os.path.join(drift.uri, REPORT_FILE), json.dumps(report, indent=1))


@tfx.dsl.components.component
def DriftGate(
    drift: tfx.dsl.components.InputArtifact[standard_artifacts.ExampleAnomalies],
    stop_on_drift: tfx.dsl.components.Parameter[int] = 0,
):
    """With stop_on_drift, fails the run on the DriftCheck's drift (a step of its own, so that the
    DriftCheck's report is recorded whether or not the run stops)."""
    report = read_report(drift.uri)
    if report["drift"] and stop_on_drift:
        raise DataDrift(describe(report) + " (stop_on_drift: nothing is trained or pushed)")
