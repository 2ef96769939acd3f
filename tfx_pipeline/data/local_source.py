"""A local data directory: interactions (CSV or Parquet) and an optional items catalog, checked against the
data contract and opened as DuckDB views, so the pipeline's SQL runs on them as it would on BigQuery.

Every problem is reported with the file, line (or Parquet row) and column; nothing is dropped silently.
"""

import csv
import glob
import os
from dataclasses import dataclass

import duckdb

import contract
from serving.history import SEEN_LIMIT

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
    has_rating = contract.RATING in {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    allowed = ", ".join(f"'{t}'" for t in contract.INTERACTION_TYPES)
    checks = [
        (contract.USER_ID, f"NULLIF(TRIM(CAST({contract.USER_ID} AS VARCHAR)), '') IS NULL", "empty"),
        (contract.ITEM_ID, f"NULLIF(TRIM(CAST({contract.ITEM_ID} AS VARCHAR)), '') IS NULL", "empty"),
        (
            contract.INTERACTION_TYPE,
            f"{contract.INTERACTION_TYPE} IS NULL OR {contract.INTERACTION_TYPE} NOT IN ({allowed})",
            f"must be one of {', '.join(contract.INTERACTION_TYPES)}",
        ),
        (
            contract.TIMESTAMP,
            f"TRY_CAST(CAST({contract.TIMESTAMP} AS VARCHAR) AS TIMESTAMPTZ) IS NULL",
            "not a timestamp (expected e.g. 2024-05-01T12:30:00Z)",
        ),
        # The examples carry seconds since 1970 and the schema allows no negative ones (as the API's
        # feedback).
        (
            contract.TIMESTAMP,
            f"TRY_CAST(CAST({contract.TIMESTAMP} AS VARCHAR) AS TIMESTAMPTZ) < TIMESTAMPTZ '1970-01-01 "
            "00:00:00+00'",
            "before 1970-01-01T00:00:00Z",
        ),
    ]
    if has_rating:
        checks += [
            (
                contract.RATING,
                f"NULLIF(TRIM(CAST({contract.RATING} AS VARCHAR)), '') IS NOT NULL "
                f"AND TRY_CAST(CAST({contract.RATING} AS VARCHAR) AS DOUBLE) IS NULL",
                "not a number",
            ),
            (
                contract.RATING,
                f"{contract.INTERACTION_TYPE} = 'rating' "
                f"AND NULLIF(TRIM(CAST({contract.RATING} AS VARCHAR)), '') IS NULL",
                "empty on a 'rating' event",
            ),
        ]
    elif con.execute(f"SELECT count(*) FROM {table} WHERE {contract.INTERACTION_TYPE} = 'rating'").fetchone()[
        0
    ]:
        return [f"{path}: 'rating' events but no {contract.RATING} column"]
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
    rating = (
        f"TRY_CAST(CAST({contract.RATING} AS VARCHAR) AS DOUBLE)" if has_rating else "CAST(NULL AS DOUBLE)"
    )
    return (
        f"SELECT CAST({contract.USER_ID} AS VARCHAR) AS {contract.USER_ID}, "
        f"CAST({contract.ITEM_ID} AS VARCHAR) AS {contract.ITEM_ID}, "
        f"CAST({contract.INTERACTION_TYPE} AS VARCHAR) AS {contract.INTERACTION_TYPE}, {rating} AS "
        f"{contract.RATING}, "
        f"CAST(CAST({contract.TIMESTAMP} AS VARCHAR) AS TIMESTAMPTZ) AS {contract.TIMESTAMP}, "
        f"CAST({contract.CATEGORY} AS VARCHAR) AS {contract.CATEGORY} FROM {table}"
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
        _load(con, path, table, contract.REQUIRED_INTERACTION_COLUMNS)
        problems += _check_interactions(con, path, table)
        has_rating = contract.RATING in {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
        selects.append(_typed_select(table, has_rating))
    if found.items_file:
        _load(con, found.items_file, "raw_items", contract.ITEM_COLUMNS)
        rows = con.execute(
            f"SELECT _row FROM raw_items WHERE NULLIF(TRIM({contract.ITEM_ID}), '') IS NULL ORDER BY _row "
            "LIMIT 3"
        ).fetchall()
        problems += [
            f"{found.items_file} line {row + 1}, column '{contract.ITEM_ID}': empty" for (row,) in rows
        ]
        dupes = con.execute(
            f"SELECT {contract.ITEM_ID}, _row FROM (SELECT *, row_number() OVER (PARTITION BY "
            f"{contract.ITEM_ID} "
            "ORDER BY _row) AS k FROM raw_items) WHERE k = 2 ORDER BY _row LIMIT 3"
        ).fetchall()
        problems += [
            f"{found.items_file} line {row + 1}, column '{contract.ITEM_ID}': duplicate item {item!r}"
            for item, row in dupes
        ]
        con.execute(f"CREATE VIEW {ITEMS_TABLE} AS SELECT {', '.join(contract.ITEM_COLUMNS)} FROM raw_items")
    else:
        con.execute(
            f"CREATE VIEW {ITEMS_TABLE} AS "
            f"SELECT '' AS {contract.ITEM_ID}, '' AS {contract.TITLE}, '' AS {contract.CATEGORY} "
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
        SELECT {contract.USER_ID}, {contract.ITEM_ID}, {contract.INTERACTION_TYPE} FROM (
          SELECT *, row_number() OVER (
            PARTITION BY {contract.USER_ID} ORDER BY {contract.TIMESTAMP} DESC, {contract.ITEM_ID} DESC) AS r
          FROM {INTERACTIONS_TABLE}) WHERE r <= {per_user}
        ORDER BY {contract.USER_ID}, {contract.TIMESTAMP}, {contract.ITEM_ID}""")
    while rows := cursor.fetchmany(chunk):
        yield from rows


def recent_user_events(data_dir: str):
    """What the API's histories start from (`recsys serve --data`, `recsys store load`): each user's last
    SEEN_LIMIT events of a data directory as (user_id, item_id, interaction_type), in time order. A generator:
    the directory is opened and checked when it is first read."""
    yield from recent_events(open_data_dir(data_dir), SEEN_LIMIT)
