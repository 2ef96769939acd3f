"""Loaded by every Python process the Vertex harness starts for a task (this directory is on its PYTHONPATH):
the Google Cloud services a task calls, stood in for on this machine where the harness's environment says so.

- VERTEX_HARNESS_BIGQUERY (a JSON file {"project.dataset.table": "file.csv"}): BigQuery. Queries are BigQuery
  SQL, translated by sqlglot and run in DuckDB over those tables; what the client and Beam's ReadFromBigQuery
  return has BigQuery's shape (a result schema with BigQuery's types; rows as dicts, an empty list for a NULL
  array). BigQuery's clock is VERTEX_HARNESS_BIGQUERY_NOW (an ISO time): CURRENT_TIMESTAMP() reads it, so that
  a query's time window selects the same events on every run.
- VERTEX_HARNESS_CUSTOM_JOBS (a directory): Vertex AI Training. A CustomJob is parsed into the real
  aiplatform_v1 request type (an unknown field fails as the API would), written there as JSON, and its worker
  pool's container command runs here as a subprocess; its exit code is the job's state.
"""

import json
import os

if os.environ.get("VERTEX_HARNESS_BIGQUERY"):
    import apache_beam as beam
    import duckdb
    import sqlglot
    from apache_beam.io.gcp import bigquery as beam_bigquery
    from google.cloud import bigquery
    from sqlglot import exp

    # The contract's columns as the BigQuery table has them (docs/architecture.md, "Data contract").
    _TABLE_COLUMNS = {
        "user_id": "VARCHAR",
        "item_id": "VARCHAR",
        "interaction_type": "VARCHAR",
        "rating": "DOUBLE",
        "timestamp": "TIMESTAMPTZ",
        "category": "VARCHAR",
        "features": "VARCHAR",
    }
    _BIGQUERY_TYPES = {
        "VARCHAR": "STRING",
        "DOUBLE": "FLOAT",
        "FLOAT": "FLOAT",
        "BIGINT": "INTEGER",
        "INTEGER": "INTEGER",
        "BOOLEAN": "BOOLEAN",
        "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    }

    def _run(sql: str):
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            "CREATE MACRO farm_fingerprint(s) AS hash(s)"
        )  # another hash; the query only orders by it
        with open(os.environ["VERTEX_HARNESS_BIGQUERY"]) as fh:
            tables = json.load(fh)
        for table, path in tables.items():
            project, dataset, name = table.split(".")
            con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS \"{project}\"")
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{project}"."{dataset}"')
            columns = ", ".join(f"'{c}': '{t}'" for c, t in _TABLE_COLUMNS.items())
            con.execute(
                f'CREATE TABLE "{project}"."{dataset}"."{name}" AS SELECT * FROM '
                f"read_csv('{path}', header=true, columns={{{columns}}})"
            )
        now = exp.cast(exp.Literal.string(os.environ["VERTEX_HARNESS_BIGQUERY_NOW"]), "TIMESTAMPTZ")
        query = sqlglot.parse_one(sql, read="bigquery").transform(
            lambda node: now.copy() if isinstance(node, exp.CurrentTimestamp) else node
        )
        return con.execute(query.sql(dialect="duckdb"))

    def _schema(cursor) -> list:
        fields = []
        for name, kind, *_ in cursor.description:
            kind = str(kind)
            repeated = kind.endswith("[]")
            fields.append(
                bigquery.SchemaField(
                    name,
                    _BIGQUERY_TYPES[kind.removesuffix("[]")],
                    mode="REPEATED" if repeated else "NULLABLE",
                )
            )
        return fields

    class _QueryJob:
        def __init__(self, sql):
            self._cursor = _run(sql)

        def result(self):
            class Rows(list):
                schema = _schema(self._cursor)

            names = [d[0] for d in self._cursor.description]
            return Rows(dict(zip(names, row)) for row in self._cursor.fetchall())

    class Client:
        def __init__(self, project=None, **_):
            self.project = project

        def query(self, sql, **_):
            return _QueryJob(sql)

    class ReadFromBigQuery(beam.PTransform):
        def __init__(self, query=None, use_standard_sql=False, **_):
            super().__init__()
            if not use_standard_sql:
                raise ValueError("the harness runs standard SQL only")
            self._rows = _QueryJob(query).result()
            repeated = [f.name for f in self._rows.schema if f.mode == "REPEATED"]
            self._rows = [{**row, **{k: row[k] or [] for k in repeated}} for row in self._rows]

        def expand(self, pbegin):
            return pbegin | beam.Create(self._rows)

    bigquery.Client = Client
    beam_bigquery.ReadFromBigQuery = ReadFromBigQuery

if os.environ.get("VERTEX_HARNESS_CUSTOM_JOBS"):
    import subprocess
    import uuid

    from google.cloud.aiplatform import gapic
    from google.cloud.aiplatform_v1 import CreateCustomJobRequest, JobState

    class JobServiceClient:
        def __init__(self, client_options=None, **_):
            self._jobs = {}

        def create_custom_job(self, parent, custom_job):
            request = CreateCustomJobRequest(
                parent=parent, custom_job=custom_job
            )  # unknown fields raise here
            job = request.custom_job
            job.name = f"{parent}/customJobs/{uuid.uuid4().int % 10**18}"
            with open(
                os.path.join(os.environ["VERTEX_HARNESS_CUSTOM_JOBS"], f"{uuid.uuid4().hex}.json"), "w"
            ) as fh:
                fh.write(CreateCustomJobRequest.to_json(request, use_integers_for_enums=False))
            [pool] = job.job_spec.worker_pool_specs
            done = subprocess.run(list(pool.container_spec.command) + list(pool.container_spec.args))
            job.state = JobState.JOB_STATE_SUCCEEDED if done.returncode == 0 else JobState.JOB_STATE_FAILED
            self._jobs[job.name] = job
            return job

        def get_custom_job(self, name, **_):
            return self._jobs[name]

    gapic.JobServiceClient = JobServiceClient
