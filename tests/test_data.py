"""Input data: the sample generator, the MovieLens converters and the data contract's errors."""

import csv
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cli.main as cli
import contract
from tfx_pipeline.data import local_source, movielens, sample
from tfx_pipeline.history_query import history_query

HEADER = ",".join(contract.INTERACTION_COLUMNS)


def write(dir_path, text, name="interactions.csv"):
    os.makedirs(dir_path, exist_ok=True)
    with open(os.path.join(dir_path, name), "w") as fh:
        fh.write(text)
    return str(dir_path)


def test_sample_has_the_contract_columns_and_planted_structure(tmp_path):
    sample.generate(str(tmp_path), users=50, items=40, events=2000, seed=1)
    con = local_source.open_data_dir(str(tmp_path))
    assert con.execute("SELECT count(*), count(DISTINCT user_id) FROM interactions").fetchone() == (2000, 50)
    # Users stay within few categories: their top category covers far more than an even 1/8 share.
    top_share = con.execute("""
        SELECT avg(share) FROM (SELECT user_id, max(n) / sum(n) AS share FROM
          (SELECT user_id, category, count(*) AS n FROM interactions GROUP BY 1, 2) GROUP BY 1)
    """).fetchone()[0]
    assert top_share > 0.35
    # Popularity is skewed: the top 10% of items hold a large share of events.
    top = con.execute("""SELECT sum(n) / 2000 FROM (SELECT count(*) AS n FROM interactions GROUP BY item_id
                         ORDER BY n DESC LIMIT 4)""").fetchone()[0]
    assert top > 0.1
    ratings = con.execute(
        "SELECT min(rating), max(rating) FROM interactions WHERE interaction_type = 'rating'"
    )
    assert ratings.fetchone() == (1.0, 5.0)


def _history_rows(data_dir: str, **kwargs) -> list[tuple]:
    con = local_source.open_data_dir(data_dir)
    return con.execute(
        history_query("interactions", **kwargs) + " ORDER BY user_id, timestamp, item_id"
    ).fetchall()


def test_each_event_gets_up_to_n_of_the_users_other_events_in_one_fixed_shuffled_order(tmp_path):
    events = [f"u1,i{n},view,,2024-01-01T00:00:{n:02d}Z,x," for n in range(12)] + [
        "u2,j0,rating,4,2024-01-01T00:00:02Z,x,",
        "u2,j1,click,,2024-01-01T00:00:03Z,x,",
    ]
    data = write(tmp_path, HEADER + "\n" + "\n".join(events) + "\n")
    rows = _history_rows(data, history_length=20)
    assert rows == _history_rows(data, history_length=20)  # the same order every run
    u1 = [r for r in rows if r[0] == "u1"]
    histories = {r[1]: r[6] or [] for r in u1}
    # A window over one order of the user's events: the k-th event gets the k - 1 before it, never itself.
    assert sorted(len(h) for h in histories.values()) == list(range(12))
    assert all(item not in h and set(h) <= set(histories) for item, h in histories.items())
    by_length = sorted(histories.items(), key=lambda kv: len(kv[1]))
    assert all(h == previous + [item] for (item, previous), (_, h) in zip(by_length, by_length[1:]))
    # Not time order: the history is the user's taste, not their last clicks.
    assert [item for item, _ in by_length] != sorted(histories, key=lambda i: int(i[1:]))
    assert max(len(r[6] or []) for r in _history_rows(data, history_length=3)) == 3
    assert {tuple(r[6] or []) for r in rows if r[0] == "u2"} in ({(), ("j0",)}, {(), ("j1",)})
    assert [(r[3], r[4]) for r in rows if r[0] == "u2"] == [(4.0, 1704067202), (0.0, 1704067203)]


def test_dislikes_are_neither_targets_nor_history(tmp_path):
    data = write(
        tmp_path,
        f"{HEADER}\n"
        "u1,a,view,,2024-01-01T00:00:01Z,x,\n"
        "u1,b,dislike,,2024-01-01T00:00:02Z,x,\n"
        "u1,c,view,,2024-01-01T00:00:03Z,x,\n",
    )
    rows = _history_rows(data)
    assert [r[1] for r in rows] == ["a", "c"]
    assert sorted(tuple(r[6] or []) for r in rows) in ([(), ("a",)], [(), ("c",)])
    assert list(local_source.recent_events(local_source.open_data_dir(data), per_user=2, chunk=1)) == [
        ("u1", "b", "dislike"),
        ("u1", "c", "view"),
    ]


def test_an_event_logged_twice_counts_once_but_a_repeat_at_another_time_counts_again(tmp_path):
    data = write(
        tmp_path,
        f"{HEADER}\n"
        "u1,a,view,,2024-01-01T00:00:01Z,x,\n"
        "u1,a,view,,2024-01-01T00:00:01Z,x,\n"  # the same row twice: logged twice
        "u1,b,view,,2024-01-01T00:00:02Z,x,{}\n"
        "u1,b,view,,2024-01-01T00:00:02Z,x,\n"  # differs only in the unused features
        "u1,a,view,,2024-01-01T00:00:03Z,x,\n",
    )  # viewed again later: a new event
    rows = _history_rows(data)
    assert [(r[1], r[4]) for r in rows] == [("a", 1704067201), ("b", 1704067202), ("a", 1704067203)]
    assert sorted(len(r[6] or []) for r in rows) == [0, 1, 2]


def test_movielens_latest_small_layout(tmp_path):
    src = write(
        tmp_path / "src",
        "userId,movieId,rating,timestamp\n1,10,4.5,964982703\n2,20,3.0,964981247\n",
        "ratings.csv",
    )
    write(
        tmp_path / "src",
        'movieId,title,genres\n10,"Heat (1995)",Action|Crime\n20,Toy Story (1995),Animation\n',
        "movies.csv",
    )
    assert movielens.convert(src, str(tmp_path / "out")) == 2
    con = local_source.open_data_dir(str(tmp_path / "out"))
    assert con.execute(
        "SELECT user_id, item_id, interaction_type, rating, category, epoch(timestamp) "
        "FROM interactions ORDER BY 1"
    ).fetchall() == [
        ("1", "10", "rating", 4.5, "Action|Crime", 964982703),
        ("2", "20", "rating", 3.0, "Animation", 964981247),
    ]
    assert con.execute("SELECT * FROM items ORDER BY 1").fetchall() == [
        ("10", "Heat (1995)", "Action|Crime"),
        ("20", "Toy Story (1995)", "Animation"),
    ]


def test_movielens_100k_layout(tmp_path):
    flags = ["0"] * 19
    flags[5] = flags[8] = "1"  # Comedy, Drama
    src = write(tmp_path / "src", "196\t242\t3\t881250949\n", "u.data")
    write(tmp_path / "src", "242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join(flags) + "\n", "u.item")
    movielens.convert(src, str(tmp_path / "out"))
    con = local_source.open_data_dir(str(tmp_path / "out"))
    assert con.execute("SELECT user_id, item_id, rating, category FROM interactions").fetchall() == [
        ("196", "242", 3.0, "Comedy|Drama")
    ]
    assert con.execute("SELECT title FROM items").fetchall() == [("Kolya (1996)",)]


def test_parquet_input_with_the_same_columns(tmp_path):
    table = pa.table(
        {
            "user_id": ["u1", "u1"],
            "item_id": ["a", "b"],
            "interaction_type": ["view", "rating"],
            "rating": [None, 5.0],
            "timestamp": pa.array([1_700_000_000, 1_700_000_100], pa.timestamp("s", tz="UTC")),
            "category": ["x", "y"],
            "features": [None, '{"device": "ios"}'],
        }
    )
    os.makedirs(tmp_path / "pq")
    pq.write_table(table, tmp_path / "pq" / "interactions-00000.parquet")
    con = local_source.open_data_dir(str(tmp_path / "pq"))
    rows = con.execute(history_query("interactions") + " ORDER BY timestamp").fetchall()
    assert [(r[1], r[3], r[4]) for r in rows] == [("a", 0.0, 1_700_000_000), ("b", 5.0, 1_700_000_100)]
    assert sorted(tuple(r[6] or []) for r in rows) in ([(), ("a",)], [(), ("b",)])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "interactions.csv: the file is empty"),
        (f"{HEADER}\n", "interactions.csv: no rows"),
        (
            "user_id,item_id,timestamp\nu1,a,2024-01-01T00:00:00Z\n",
            "interactions.csv: missing column(s) interaction_type, category",
        ),
        (
            f"{HEADER}\nu1,a,view,,2024-01-01T00:00:00Z,x,\nu1,b,view,,yesterday,x,\n",
            "interactions.csv line 3, column 'timestamp': not a timestamp",
        ),
        (
            f"{HEADER}\nu1,a,view,,2024-01-01T00:00:00Z,x,\nu1,b,view,,1969-12-31T23:59:59Z,x,\n",
            "interactions.csv line 3, column 'timestamp': before 1970-01-01T00:00:00Z (got "
            "'1969-12-31T23:59:59Z')",
        ),
        (
            f"{HEADER}\nu1,a,rating,five,2024-01-01T00:00:00Z,x,\n",
            "line 2, column 'rating': not a number (got 'five')",
        ),
        (
            f"{HEADER}\nu1,a,rating,,2024-01-01T00:00:00Z,x,\n",
            "line 2, column 'rating': empty on a 'rating' event",
        ),
        (
            f"{HEADER}\nu1,a,watch,,2024-01-01T00:00:00Z,x,\n",
            "line 2, column 'interaction_type': must be one of",
        ),
        (
            f"{HEADER}\nu1,a,view,,2024-01-01T00:00:00Z,x,\n,b,view,,2024-01-01T00:00:00Z,x,\n",
            "line 3, column 'user_id': empty",
        ),
    ],
)
def test_contract_violations_name_file_line_and_column(tmp_path, text, expected):
    data = write(tmp_path, text)
    with pytest.raises(local_source.DataError) as error:
        local_source.open_data_dir(data)
    assert expected in str(error.value)
    assert os.path.join(data, "interactions.csv") in str(error.value)


def test_every_bad_row_is_reported_not_just_the_first(tmp_path):
    data = write(tmp_path, f"{HEADER}\nu1,a,view,,bad,x,\nu1,a,zap,,2024-01-01T00:00:00Z,x,\n")
    with pytest.raises(local_source.DataError) as error:
        local_source.open_data_dir(data)
    assert "line 2, column 'timestamp'" in str(error.value) and "line 3, column 'interaction_type'" in str(
        error.value
    )


def test_items_catalog_duplicates_are_named(tmp_path):
    data = write(tmp_path, f"{HEADER}\nu1,a,view,,2024-01-01T00:00:00Z,x,\n")
    write(tmp_path, "item_id,title,category\na,A,x\na,A again,x\n", "items.csv")
    with pytest.raises(
        local_source.DataError, match="items.csv line 3, column 'item_id': duplicate item 'a'"
    ):
        local_source.open_data_dir(data)


def test_cli_reports_bad_data_without_a_traceback(tmp_path, capsys):
    data = write(tmp_path, f"{HEADER}\nu1,a,view,,not-a-time,x,\n")
    assert cli.main(["pipeline", "run", "--data", data, "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "line 2, column 'timestamp'" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "w" / "metadata.sqlite")  # stopped before any component


def test_cli_sample_writes_the_data_dir(tmp_path):
    assert (
        cli.main(["data", "sample", "--out", str(tmp_path), "--users", "5", "--items", "5", "--events", "50"])
        == 0
    )
    with open(tmp_path / "interactions.csv") as fh:
        assert len(list(csv.reader(fh))) == 51
