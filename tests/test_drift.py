"""Drift between pipeline runs (tfx_pipeline/components/drift.py): TFDV's comparators on the item, category
and interaction-type distributions, reported per run, and with stop_on_drift the run stops before anything is
pushed."""

import csv
import os
import shutil

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from serving import distances
from serving.catalog import pushed_versions
from tfx_pipeline import local_runner
from tfx_pipeline.components import drift


def statistics(interaction_types: list[str]):
    frame = pd.DataFrame(
        {
            "item_id": [f"i{n % 20}" for n in range(len(interaction_types))],
            "category": [f"c{n % 4}" for n in range(len(interaction_types))],
            "interaction_type": interaction_types,
        }
    )
    return tfdv.generate_statistics_from_dataframe(frame)


def test_compare_names_the_feature_and_its_distance():
    before = statistics(["view"] * 70 + ["purchase"] * 30)
    after = statistics(["view"] * 30 + ["purchase"] * 70)
    found = drift.compare(after, before, distances.DEFAULT_THRESHOLDS)
    by = {(d["feature"], d["comparator"]): d for d in found}
    assert set(by) == {(f, c) for f in drift.FEATURES for c in drift.COMPARATORS}
    assert by["interaction_type", "l_infinity"]["distance"] == pytest.approx(0.4)
    assert by["interaction_type", "l_infinity"]["drift"] and by["interaction_type", "jensen_shannon"]["drift"]
    assert not any(d["drift"] for d in found if d["feature"] != "interaction_type")
    report = {"previous": "x", "distances": found, "drift": True}
    assert "interaction_type l_infinity distance 0.4000 > threshold 0.1" in drift.describe(report)
    assert not any(d["drift"] for d in drift.compare(before, before, distances.DEFAULT_THRESHOLDS))
    loose = drift.compare(after, before, {"l_infinity": 0.5, "jensen_shannon": 0.5})
    assert not any(d["drift"] for d in loose)
    with pytest.raises(ValueError, match="not one of"):
        distances.check_thresholds({"wasserstein": 0.1})
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        distances.check_thresholds({"l_infinity": 0})


def test_the_first_run_reports_no_previous_run(pipeline_run):
    assert pipeline_run["drift"] == {"previous": None, "distances": [], "drift": False}
    assert drift.describe(pipeline_run["drift"]) == "drift: no previous run to compare with"


def test_a_shifted_interaction_distribution_is_reported_and_with_stop_on_drift_nothing_is_pushed(
    pipeline_run, tmp_path
):
    """The second run over data whose views became purchases, in a copy of the first run's workdir (its
    metadata: the previous run's statistics)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copy(os.path.join(pipeline_run["workdir"], "metadata.sqlite"), workdir / "metadata.sqlite")
    shifted = tmp_path / "shifted"
    shutil.copytree(pipeline_run["data_dir"], shifted)
    with open(shifted / "interactions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["interaction_type"] == "view":
            row["interaction_type"] = "purchase"
    with open(shifted / "interactions.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    lines = []
    with pytest.raises(drift.DataDrift) as stopped:
        local_runner.run(str(shifted), str(workdir), stop_on_drift=True, echo=lines.append)
    message = str(stopped.value)
    assert "interaction_type l_infinity distance" in message and "nothing is trained or pushed" in message
    assert "item_id" not in message and "category" not in message
    assert not any("Transform: started" in line for line in lines)
    assert pushed_versions(local_runner.serving_dir(str(workdir), "recsys")) == []
    [report_file] = [
        os.path.join(root, drift.REPORT_FILE)
        for root, _, files in os.walk(workdir / "pipeline_root" / "DriftCheck")
        if drift.REPORT_FILE in files
    ]
    report = drift.read_report(os.path.dirname(report_file))  # recorded in the run's artifact
    assert report["drift"] and report["previous"].startswith(pipeline_run["workdir"])
    [shift] = [
        d
        for d in report["distances"]
        if d["feature"] == "interaction_type" and d["comparator"] == "l_infinity"
    ]
    assert shift["drift"] and f"distance {shift['distance']:.4f}" in message
    purchases = sum(row["interaction_type"] == "purchase" for row in rows) / len(rows)
    assert 0.1 < shift["distance"] <= purchases


def test_the_cloud_config_sets_the_thresholds_and_refuses_bad_ones(tmp_path):
    from tfx_pipeline import cloud_config

    config = os.path.join(os.path.dirname(__file__), "..", "config", "cloud.example.yaml")
    loaded = cloud_config.load(config)
    assert (
        loaded.drift_thresholds == {"l_infinity": 0.1, "jensen_shannon": 0.1}
        and loaded.stop_on_drift is False
    )
    bad = tmp_path / "cloud.yaml"
    with open(config) as fh:
        text = fh.read()
    bad.write_text(
        text.replace("l_infinity: 0.1", "l_infinity: 2").replace(
            "stop_on_drift: false", "stop_on_drift: maybe"
        )
    )
    with pytest.raises(cloud_config.ConfigError) as refused:
        cloud_config.load(str(bad))
    assert "drift.l_infinity: expected a number above 0, at most 1, got 2" in str(refused.value)
    assert "drift.stop_on_drift: expected true or false, got 'maybe'" in str(refused.value)
