"""A local data directory: interactions (CSV or Parquet) and an optional items catalog, checked against the
data contract and opened as DuckDB views, so the pipeline's SQL runs on them as it would on BigQuery.

Every problem is reported with the file, line (or Parquet row) and column; nothing is dropped silently.
"""

import csv
import glob
import os
from dataclasses import dataclass

import duckdb

from transform import features as f

INTERACTIONS_TABLE = "interactions"
ITEMS_TABLE = "items"
MAX_REPORTED_PROBLEMS = 10


class DataError(ValueError):
    """The input data breaks the data contract; the message names every problem found."""


@dataclass(frozen=True)
class DataDir:
    interaction_files: tuple
    items_file: str | None


def find_files(data_dir: str) -> DataDir:
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: not a directory")
    files = sorted(
        glob.glob(os.path.join(data_dir, "interactions*.csv"))
        + glob.glob(os.path.join(data_dir, "interactions*.parquet"))
    )
    if not files:
        raise DataError(f"{data_dir}: no interactions.csv or interactions*.parquet file")
    items = os.path.join(data_dir, "items.csv")
    return DataDir(tuple(files), items if os.path.exists(items) else None)


def _load(con, path: str, table: str, required: tuple) -> None:
    """Loads one file into `table` (as text, with a `_row` number); raises DataError on malformed rows,
    missing columns or no rows."""
    quoted = path.replace("'", "''")
    if path.endswith(".parquet"):
        scan = f"read_parquet('{quoted}')"
    else:
        header = _csv_header(path)
        columns = ", ".join("'{}': 'VARCHAR'".format(c.replace("'", "''")) for c in header)
        # The dialect is the contract's, not sniffed: a sniffer misled by a malformed row reads the whole
        # file as one column and blames the wrong line. Malformed rows go to a rejects table, which keeps
        # each one's line in the file and the parser's full reason.
        scan = (
            f"read_csv('{quoted}', header=true, delim=',', quote='\"', escape='\"', all_varchar=true, "
            f"auto_detect=false, columns={{{columns}}}, store_rejects=true, "
            f"rejects_table='{table}_rejects', rejects_scan='{table}_reject_scans')"
        )
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT *, row_number() OVER () AS _row FROM {scan}"
        )
    except duckdb.Error as e:
        raise DataError(f"{path}: cannot read ({_reason(e)})") from None
    if not path.endswith(".parquet"):
        rejected = con.execute(
            f"SELECT line, any_value(error_message ORDER BY column_idx), any_value(csv_line) "
            f"FROM {table}_rejects GROUP BY line ORDER BY line LIMIT {MAX_REPORTED_PROBLEMS + 1}"
        ).fetchall()
        if rejected:
            problems = [f"{path} line {line}: {message} (got {text!r})" for line, message, text in rejected]
            raise DataError(_problem_list("the file is not well-formed CSV", problems))
    present = {row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()}
    missing = [c for c in required if c not in present]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; the header has {sorted(present - {'_row'})}"
        )
    if con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0:
        raise DataError(f"{path}: no rows")


def _csv_header(path: str) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read the header line as CSV ({e})") from None
    if not header:
        raise DataError(f"{path}: the file is empty (no header line)")
    return header


def _reason(error: duckdb.Error) -> str:
    """DuckDB's message without its trailing advice and reader settings, on one line."""
    lines = []
    for line in str(error).splitlines():
        if not line.strip() or line.startswith("Possible fixes"):
            break
        lines.append(line.strip())
    return "; ".join(lines)


def _problem_list(headline: str, problems: list[str]) -> str:
    more = "\n  ... and more" if len(problems) > MAX_REPORTED_PROBLEMS else ""
    return f"{headline}:\n  " + "\n  ".join(problems[:MAX_REPORTED_PROBLEMS]) + more


def _where(path: str) -> str:
    return "line" if path.endswith(".csv") else "row"


def _row_number(path: str, row: int) -> int:
    return row + 1 if path.endswith(".csv") else row  # CSV: line 1 is the header


def _check_interactions(con, path: str, table: str) -> list[str]:
    has_rating = f.RATING in {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    allowed = ", ".join(f"'{t}'" for t in f.INTERACTION_TYPES)
    checks = [
        (f.USER_ID, f"NULLIF(TRIM(CAST({f.USER_ID} AS VARCHAR)), '') IS NULL", "empty"),
        (f.ITEM_ID, f"NULLIF(TRIM(CAST({f.ITEM_ID} AS VARCHAR)), '') IS NULL", "empty"),
        (
            f.INTERACTION_TYPE,
            f"{f.INTERACTION_TYPE} IS NULL OR {f.INTERACTION_TYPE} NOT IN ({allowed})",
            f"must be one of {', '.join(f.INTERACTION_TYPES)}",
        ),
        (
            f.TIMESTAMP,
            f"TRY_CAST(CAST({f.TIMESTAMP} AS VARCHAR) AS TIMESTAMPTZ) IS NULL",
            "not a timestamp (expected e.g. 2024-05-01T12:30:00Z)",
        ),
        # The examples carry seconds since 1970 and the schema allows no negative ones (as the API's feedback).
        (
            f.TIMESTAMP,
            f"TRY_CAST(CAST({f.TIMESTAMP} AS VARCHAR) AS TIMESTAMPTZ) < TIMESTAMPTZ '1970-01-01 00:00:00+00'",
            "before 1970-01-01T00:00:00Z",
        ),
    ]
    if has_rating:
        checks += [
            (
                f.RATING,
                f"NULLIF(TRIM(CAST({f.RATING} AS VARCHAR)), '') IS NOT NULL "
                f"AND TRY_CAST(CAST({f.RATING} AS VARCHAR) AS DOUBLE) IS NULL",
                "not a number",
            ),
            (
                f.RATING,
                f"{f.INTERACTION_TYPE} = 'rating' AND NULLIF(TRIM(CAST({f.RATING} AS VARCHAR)), '') IS NULL",
                "empty on a 'rating' event",
            ),
        ]
    elif con.execute(f"SELECT count(*) FROM {table} WHERE {f.INTERACTION_TYPE} = 'rating'").fetchone()[0]:
        return [f"{path}: 'rating' events but no {f.RATING} column"]
    problems = []
    for column, condition, what in checks:
        rows = con.execute(
            f"SELECT _row, CAST({column} AS VARCHAR) FROM {table} WHERE {condition} ORDER BY _row LIMIT 3"
        ).fetchall()
        for row, value in rows:
            problems.append(
                f"{path} {_where(path)} {_row_number(path, row)}, column '{column}': {what} (got {value!r})"
            )
    return problems


def _typed_select(table: str, has_rating: bool) -> str:
    rating = f"TRY_CAST(CAST({f.RATING} AS VARCHAR) AS DOUBLE)" if has_rating else "CAST(NULL AS DOUBLE)"
    return (
        f"SELECT CAST({f.USER_ID} AS VARCHAR) AS {f.USER_ID}, CAST({f.ITEM_ID} AS VARCHAR) AS {f.ITEM_ID}, "
        f"CAST({f.INTERACTION_TYPE} AS VARCHAR) AS {f.INTERACTION_TYPE}, {rating} AS {f.RATING}, "
        f"CAST(CAST({f.TIMESTAMP} AS VARCHAR) AS TIMESTAMPTZ) AS {f.TIMESTAMP}, "
        f"CAST({f.CATEGORY} AS VARCHAR) AS {f.CATEGORY} FROM {table}"
    )


def open_data_dir(data_dir: str) -> duckdb.DuckDBPyConnection:
    """Validates the data directory and returns a DuckDB connection with typed views
    `interactions` (the contract's columns) and `items` (empty when there is no catalog).
    Raises DataError naming every problem (up to MAX_REPORTED_PROBLEMS)."""
    found = find_files(data_dir)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # BigQuery's functions under their names, so history_query.py is one SQL text for both engines.
    con.execute("CREATE MACRO unix_seconds(ts) AS CAST(epoch(ts) AS BIGINT)")
    con.execute(
        "CREATE MACRO farm_fingerprint(s) AS hash(s)"
    )  # another hash, but only an order is taken from it
    problems, selects = [], []
    for i, path in enumerate(found.interaction_files):
        table = f"raw_interactions_{i}"
        _load(con, path, table, f.REQUIRED_INTERACTION_COLUMNS)
        problems += _check_interactions(con, path, table)
        has_rating = f.RATING in {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
        selects.append(_typed_select(table, has_rating))
    if found.items_file:
        _load(con, found.items_file, "raw_items", f.ITEM_COLUMNS)
        rows = con.execute(
            f"SELECT _row FROM raw_items WHERE NULLIF(TRIM({f.ITEM_ID}), '') IS NULL ORDER BY _row LIMIT 3"
        ).fetchall()
        problems += [f"{found.items_file} line {row + 1}, column '{f.ITEM_ID}': empty" for (row,) in rows]
        dupes = con.execute(
            f"SELECT {f.ITEM_ID}, _row FROM (SELECT *, row_number() OVER (PARTITION BY {f.ITEM_ID} "
            "ORDER BY _row) AS k FROM raw_items) WHERE k = 2 ORDER BY _row LIMIT 3"
        ).fetchall()
        problems += [
            f"{found.items_file} line {row + 1}, column '{f.ITEM_ID}': duplicate item {item!r}"
            for item, row in dupes
        ]
        con.execute(f"CREATE VIEW {ITEMS_TABLE} AS SELECT {', '.join(f.ITEM_COLUMNS)} FROM raw_items")
    else:
        con.execute(
            f"CREATE VIEW {ITEMS_TABLE} AS SELECT '' AS {f.ITEM_ID}, '' AS {f.TITLE}, '' AS {f.CATEGORY} "
            "WHERE false"
        )
    if problems:
        raise DataError(_problem_list("the data breaks the contract", problems))
    con.execute(f"CREATE VIEW {INTERACTIONS_TABLE} AS " + " UNION ALL ".join(selects))
    return con


def recent_events(con, per_user: int, chunk: int = 10_000):
    """Yields (user_id, item_id, interaction_type) of each user's last `per_user` events, grouped by user, in
    time order; `chunk` rows in memory at a time."""
    cursor = con.execute(f"""
        SELECT {f.USER_ID}, {f.ITEM_ID}, {f.INTERACTION_TYPE} FROM (
          SELECT *, row_number() OVER (PARTITION BY {f.USER_ID} ORDER BY {f.TIMESTAMP} DESC, {f.ITEM_ID} DESC) AS r
          FROM {INTERACTIONS_TABLE}) WHERE r <= {per_user}
        ORDER BY {f.USER_ID}, {f.TIMESTAMP}, {f.ITEM_ID}""")
    while rows := cursor.fetchmany(chunk):
        yield from rows
