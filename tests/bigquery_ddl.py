"""The BigQuery tables as docs/deployment.md creates them (`bq mk --table ... project:dataset.table SCHEMA`),
for the tests that check what the API writes and what the queries read against the documented schema."""

import pathlib
import re

DEPLOYMENT = pathlib.Path(__file__).resolve().parent.parent / "docs" / "deployment.md"
# BigQuery's type -> DuckDB's, for the queries run through sqlglot on DuckDB
DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "INTEGER": "BIGINT",
    "FLOAT": "DOUBLE",
    "TIMESTAMP": "TIMESTAMP",
    "JSON": "JSON",
}


def documented_schema(table: str) -> dict[str, str]:
    """{column: BigQuery type} of `dataset.table` in docs/deployment.md's `bq mk --table` commands."""
    text = DEPLOYMENT.read_text().replace("\\\n", " ")
    found = re.findall(rf"bq mk --table [^\n]*?:{re.escape(table)}\s+(\S+)", text)
    assert len(found) == 1, f"docs/deployment.md creates {table} {len(found)} times"
    return dict(column.split(":") for column in found[0].split(","))


def duckdb_table(name: str, table: str) -> str:
    """CREATE TABLE `name` with the documented schema of `dataset.table`, in DuckDB's types."""
    columns = ", ".join(f"{c} {DUCKDB_TYPES[t]}" for c, t in documented_schema(table).items())
    return f"CREATE TABLE {name} ({columns})"


def documented_time_partitioning(table: str) -> str:
    """The column `dataset.table` is partitioned by in docs/deployment.md."""
    text = DEPLOYMENT.read_text().replace("\\\n", " ")
    [column] = re.findall(
        rf"bq mk --table --time_partitioning_field (\w+) [^\n]*?:{re.escape(table)}\s", text
    )
    return column
