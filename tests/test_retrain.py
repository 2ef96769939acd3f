"""`recsys pipeline retrain`'s decision (tfx_pipeline/retrain.py): enough new feedback, or feedback that
drifted from the last run's training data, starts a run; otherwise nothing. The run itself is `recsys pipeline
run`."""

import csv
import os
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import cli.main as cli
from proxy.feedback_store import FeedbackStore
from tests import bigquery_ddl
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


def duckdb_bigquery(rows: list[tuple], table: str = "proj-1.recsys.feedback"):
    """query(sql, params) as retrain.bigquery_runner's, over a DuckDB table of docs/deployment.md's feedback
    schema holding `rows` (user, item, type, event time): the BigQuery SQL transpiled by sqlglot."""
    import duckdb
    import sqlglot

    project, dataset, name = table.split(".")
    quoted = f'"{project}".{dataset}.{name}'
    con = duckdb.connect()
    con.execute(f"ATTACH ':memory:' AS \"{project}\"")
    con.execute(f'CREATE SCHEMA "{project}".{dataset}')
    con.execute(bigquery_ddl.duckdb_table(quoted, f"{dataset}.feedback"))
    for user, item, kind, at in rows:
        con.execute(
            f"INSERT INTO {quoted} VALUES (?, ?, ?, NULL, ?, 'c', NULL)",
            [user, item, kind, at.replace(tzinfo=None)],
        )

    def query(sql, params):
        sqlglot.parse_one(sql, read="bigquery")  # valid BigQuery
        [duck_sql] = sqlglot.transpile(sql, read="bigquery", write="duckdb")
        return con.execute(duck_sql, {k: v.replace(tzinfo=None) for k, v in params.items()}).fetchall()

    return query


NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


def test_the_bigquery_count_takes_the_events_after_the_last_run_up_to_now():
    rows = [("u", "i", "click", NOW - timedelta(minutes=m)) for m in (5, 59, 60, 61, 600)]
    rows.append(("u", "i", "click", NOW + timedelta(minutes=1)))  # a client's clock ahead: the next count's
    query = duckdb_bigquery(rows)
    decision = retrain.decide_in_bigquery(
        query, "proj-1.recsys.feedback", NOW - timedelta(hours=1), NOW, min_new_events=2
    )
    assert (
        decision.run and decision.new_events == 2
    )  # 5 and 59 minutes ago; the one at the bound was counted before
    decision = retrain.decide_in_bigquery(
        query, "proj-1.recsys.feedback", NOW - timedelta(days=1), NOW, min_new_events=10
    )
    assert not decision.run and decision.reason == (
        "5 new events (fewer than 10), no drift; drift is checked in the run (its DriftCheck, the config's "
        "drift: keys)"
    )


def test_retrain_with_a_cloud_config_counts_in_bigquery_and_submits_to_vertex(
    cloud_config, tmp_path, monkeypatch, capsys
):
    from google.auth.credentials import AnonymousCredentials

    from cli import pipeline
    from tfx_pipeline import vertex_runner

    rows = [("u", f"i{n}", "click", NOW - timedelta(days=1, minutes=n)) for n in range(30)]
    query = duckdb_bigquery(rows, cloud_config.feedback_table)
    monkeypatch.setattr(retrain, "bigquery_runner", lambda project, credentials: query)
    monkeypatch.setattr(retrain, "utc_now", lambda: NOW)
    monkeypatch.setattr(pipeline, "_credentials", AnonymousCredentials)
    # the bucket's state file: a local directory here (gs:// is not reachable)
    monkeypatch.setattr(retrain, "cloud_state_path", lambda root: str(tmp_path / retrain.STATE_FILE))
    submitted = []
    monkeypatch.setattr(
        vertex_runner,
        "submit",
        lambda config, template, schedule, credentials: (
            submitted.append((config, template, schedule))
            or SimpleNamespace(resource_name="projects/p/locations/r/pipelineJobs/recsys-1")
        ),
    )
    config = os.path.join(os.path.dirname(__file__), "..", "config", "cloud.example.yaml")
    retrain_cloud = ["pipeline", "retrain", "--config", config, "--template", "pipeline.json"]
    assert cli.main([*retrain_cloud, "--min-new-events", "31"]) == 0
    assert capsys.readouterr().out.startswith("no run: 30 new events (fewer than 31)") and not submitted
    assert cli.main([*retrain_cloud, "--min-new-events", "30", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("run: 30 new events (at least 30)") and not submitted
    assert cli.main([*retrain_cloud, "--min-new-events", "30"]) == 0
    assert "submitted: projects/p/locations/r/pipelineJobs/recsys-1" in capsys.readouterr().out
    [(config_used, template, schedule)] = submitted
    assert config_used.feedback_table == cloud_config.feedback_table and template == "pipeline.json"
    assert schedule is None
    # the next count starts where this one stopped
    assert retrain.read_cloud_state("gs://unused", 180, NOW) == NOW
    assert cli.main([*retrain_cloud, "--min-new-events", "1"]) == 0
    assert capsys.readouterr().out.startswith("no run: 0 new events (fewer than 1)")


def test_retrain_needs_data_and_workdir_or_a_cloud_config(capsys):
    assert cli.main(["pipeline", "retrain", "--feedback-db", "x.db"]) == 2
    assert "--data and --workdir are required (or --config for Google Cloud)" in capsys.readouterr().err
