"""`recsys pipeline retrain`'s decision (tfx_pipeline/retrain.py): enough new feedback, or feedback that
drifted from the last run's training data, starts a run; otherwise nothing. The run itself is `recsys pipeline
run`."""

import csv
import os

import cli.main as cli
from proxy.feedback_store import FeedbackStore
from tfx_pipeline import retrain


def store_events(db: str, data_dir: str, n: int, interaction_type: str | None = None):
    """n events spread over the data (as its interaction types, or all of `interaction_type`)."""
    with open(os.path.join(data_dir, "interactions.csv"), newline="") as fh:
        every = list(csv.DictReader(fh))
    rows = every[:: len(every) // n][:n]
    store = FeedbackStore(db)
    store.accept(
        [
            dict(
                user_id=r["user_id"],
                item_id=r["item_id"],
                interaction_type=interaction_type or r["interaction_type"],
                category=r["category"],
                timestamp=None,
            )
            for r in rows
        ]
    )
    store.close()


def retrain_says(capsys, *args) -> str:
    assert cli.main(["pipeline", "retrain", "--dry-run", *args]) == 0
    return capsys.readouterr().out.strip()


def test_decide():
    drifted = [
        {
            "feature": "interaction_type",
            "comparator": "l_infinity",
            "distance": 0.5,
            "threshold": 0.1,
            "drift": True,
        }
    ]
    assert retrain.decide(1000, 1000, None).run
    assert not retrain.decide(999, 1000, None).run
    assert not retrain.decide(999, 1000, [dict(drifted[0], drift=False)]).run
    decision = retrain.decide(200, 1000, drifted)
    assert decision.run and "interaction_type l_infinity distance 0.5000 > threshold 0.1" in decision.reason


def test_retrain_runs_on_enough_new_events_or_drift_and_counts_only_events_since_its_last_run(
    pipeline_run, tmp_path, capsys
):
    db, data = str(tmp_path / "feedback.sqlite"), pipeline_run["data_dir"]
    workdir = pipeline_run["workdir"]  # read only: its metadata holds the last run's statistics
    common = ["--data", data, "--workdir", workdir, "--feedback-db", db]
    store_events(db, data, 5)
    assert retrain_says(capsys, *common) == (
        "no run: 5 new events (fewer than 1000), no drift; drift not checked under 100 new events"
    )
    store_events(db, data, 300)  # as the training data: no drift
    said = retrain_says(capsys, *common)
    assert said == "no run: 305 new events (fewer than 1000), no drift", said
    assert retrain_says(capsys, *common, "--min-new-events", "300") == "run: 305 new events (at least 300)"
    store_events(db, data, 300, interaction_type="purchase")  # the new events are mostly purchases
    said = retrain_says(capsys, *common)
    assert said.startswith("run: 605 new events drifted: drift since the previous run: interaction_type"), (
        said
    )


def test_retrain_counts_events_after_the_last_run_it_started(tmp_path, sample_split, capsys):
    db, workdir = str(tmp_path / "feedback.sqlite"), str(tmp_path / "work")
    store_events(db, sample_split[0], 20)
    retrain.write_state(workdir, 15)
    said = retrain_says(capsys, "--data", sample_split[0], "--workdir", workdir, "--feedback-db", db)
    assert said.startswith("no run: 5 new events")
    assert (
        cli.main(["pipeline", "retrain", "--data", "x", "--workdir", workdir, "--feedback-db", "nope.db"])
        == 2
    )
    assert "nope.db: no feedback database" in capsys.readouterr().err
