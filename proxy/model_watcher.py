"""Keeps the newest pushed version loaded: polls the model base, loads a new version beside the serving
one, warms it up, then swaps one reference. A request holds the model it started with, so no request
fails during a swap."""

import gc
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serving.catalog import Catalog, newest_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    backend: Any  # EmbeddedModel, GrpcPredictionClient or RestPredictionClient: recommend/similar
    catalog: Catalog

    @property
    def version(self) -> str:
        """The version that answered: as TF Serving reported it to this thread's last call, else the loaded
        one."""
        return getattr(self.backend, "model_version", None) or self.catalog.version


def embedded_loader(model_base: str) -> Callable[[str], ServingModel]:
    from serving.embedded import EmbeddedModel

    def load(version: str) -> ServingModel:
        model = EmbeddedModel(os.path.join(model_base, version))
        model.recommend([""], [[]], [[]], 1)  # first call builds the searcher: pay it before serving
        return ServingModel(model, model.catalog)

    return load


def remote_loader(model_base: str, client) -> Callable[[str], ServingModel]:
    """TF Serving loads versions itself; the proxy follows the same base for the catalog."""
    return lambda version: ServingModel(client, Catalog(os.path.join(model_base, version)))


class ModelWatcher:
    def __init__(self, model_base: str, load: Callable[[str], ServingModel], interval: float):
        self.model_base, self.load, self.interval = model_base, load, interval
        self.current: ServingModel | None = None
        self.failed: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    @property
    def version(self) -> str | None:
        """The loaded version (its directory name under the model base)."""
        return self.current.catalog.version if self.current else None

    def poll(self) -> bool:
        """Loads the newest version if it is not the current one; returns whether it swapped."""
        try:
            version = newest_version(self.model_base)
        except FileNotFoundError:
            return False
        if version == self.version or version in self.failed:
            return False
        try:
            loaded = self.load(version)
        except (
            Exception
        ):  # a broken push must not stop serving: the current version stays, this one is skipped
            log.exception("could not load model version %s from %s", version, self.model_base)
            self.failed.add(version)
            return False
        self.current = loaded
        # A loaded TensorFlow model is millions of long-lived Python objects; every full garbage collection
        # would walk them all (measured: 300 ms pauses under load). Frozen objects are never scanned; the
        # old version's are unfrozen and collected first, one pause per swap instead of one every few seconds.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.info("serving model version %s", version)
        return True

    def _run(self):
        while not self._stop.wait(self.interval):
            self.poll()

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 1)
