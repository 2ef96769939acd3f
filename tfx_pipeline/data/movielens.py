"""MovieLens (ml-latest-small: ratings.csv/movies.csv; ml-100k: u.data/u.item) into the data contract.

An item's category is its whole genre list ("Action|Crime"): the first genre alone put every action film in
one category, whatever else it was.
"""

import csv
import os
from datetime import datetime, timezone

import contract

# ml-100k's u.item ends with one 0/1 flag per genre, in this order (its README).
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


def _iso(epoch_seconds: str) -> str:
    return datetime.fromtimestamp(int(epoch_seconds), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _latest_small(src):
    with open(os.path.join(src, "movies.csv"), newline="", encoding="utf-8") as fh:
        movies = {r["movieId"]: (r["title"], r["genres"]) for r in csv.DictReader(fh)}
    with open(os.path.join(src, "ratings.csv"), newline="", encoding="utf-8") as fh:
        ratings = [(r["userId"], r["movieId"], r["rating"], r["timestamp"]) for r in csv.DictReader(fh)]
    return movies, ratings


def _ml100k(src):
    movies = {}
    with open(os.path.join(src, "u.item"), encoding="latin-1") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("|")
            flags = parts[-len(ML100K_GENRES) :]
            genres = "|".join(g for g, flag in zip(ML100K_GENRES, flags) if flag == "1") or "unknown"
            movies[parts[0]] = (parts[1], genres)
    with open(os.path.join(src, "u.data"), encoding="latin-1") as fh:
        ratings = [tuple(line.split()) for line in fh if line.strip()]
    return movies, ratings


def convert(src: str, out_dir: str) -> int:
    """Writes out_dir/interactions.csv and items.csv; returns the number of interactions."""
    if os.path.exists(os.path.join(src, "ratings.csv")):
        movies, ratings = _latest_small(src)
    elif os.path.exists(os.path.join(src, "u.data")):
        movies, ratings = _ml100k(src)
    else:
        raise FileNotFoundError(f"{src}: neither ratings.csv (ml-latest-small) nor u.data (ml-100k)")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "interactions.csv"), "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(contract.INTERACTION_COLUMNS)
        for user, movie, rating, ts in ratings:
            writer.writerow(
                [user, movie, "rating", rating, _iso(ts), movies.get(movie, ("", "unknown"))[1], ""]
            )
    with open(os.path.join(out_dir, "items.csv"), "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(contract.ITEM_COLUMNS)
        for movie, (title, genre) in movies.items():
            writer.writerow([movie, title, genre])
    return len(ratings)
