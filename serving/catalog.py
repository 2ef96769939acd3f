"""What the API knows of a pushed model version besides its signatures: items and known users."""

import csv
import itertools
import os
from dataclasses import dataclass

import tensorflow as tf

import contract
from serving.exported import read_report


@dataclass(frozen=True)
class Item:
    item_id: str
    title: str
    category: str
    popularity: int


def pushed_versions(model_base: str) -> list[str]:
    """The integer versions under model_base whose top saved_model.pb is there (the Pusher writes it last),
    oldest first."""
    versions = [
        v.strip("/") for v in (tf.io.gfile.listdir(model_base) if tf.io.gfile.isdir(model_base) else [])
    ]
    return sorted(
        (
            v
            for v in versions
            if v.isdigit() and tf.io.gfile.exists(os.path.join(model_base, v, contract.SAVED_MODEL_FILE))
        ),
        key=int,
    )


def newest_version(model_base: str) -> str:
    versions = pushed_versions(model_base)
    if not versions:
        raise FileNotFoundError(f"{model_base}: no pushed model version (expected <model-base>/<integer>/)")
    return versions[-1]


class Catalog:
    def __init__(self, version_dir: str):
        self.version = os.path.basename(os.path.normpath(version_dir))
        with tf.io.gfile.GFile(os.path.join(version_dir, contract.EXTRA_DIR, contract.ITEMS_FILE)) as fh:
            self.items = {
                r[contract.ITEM_ID]: Item(
                    r[contract.ITEM_ID], r[contract.TITLE], r[contract.CATEGORY], int(r[contract.POPULARITY])
                )
                for r in csv.DictReader(fh)
            }
        # The Transform vocabulary the SavedModel maps user ids with.
        with tf.io.gfile.GFile(os.path.join(version_dir, contract.ASSETS_DIR, contract.USER_VOCAB)) as fh:
            self.known_users = frozenset(line.rstrip("\n") for line in fh)
        # The most items one query may leave out: the SavedModel's own limit, so an older version still
        # answers.
        self.max_exclusions = read_report(version_dir)["hyperparameters"]["max_exclusions"]
        self.by_popularity = sorted(self.items, key=lambda i: -self.items[i].popularity)
        self._events = sum(item.popularity for item in self.items.values()) or 1

    def popular(self, k: int, exclude: set[str]) -> list[tuple[str, float]]:
        """The k most popular items not in exclude, scored by their share of training events."""
        top = itertools.islice((i for i in self.by_popularity if i not in exclude), k)
        return [(i, self.items[i].popularity / self._events) for i in top]
