"""Feedback events, durable: a local SQLite database in WAL mode, each write committed (fsynced) before
the API answers 202. Its rows have the interactions contract's columns, so `export` writes them as a
data-directory file that the next training run reads beside the original interactions. In the cloud it
is also the write-ahead buffer of the BigQuery sink, which records how far it has delivered."""

import contextlib
import csv
import json
import os
import sqlite3
import threading
import uuid
from datetime import datetime, timezone

import contract

EXPORT_FILE = "interactions-feedback.csv"
SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- arrival order
  event_id TEXT NOT NULL UNIQUE,
  user_id TEXT NOT NULL,
  item_id TEXT NOT NULL,
  interaction_type TEXT NOT NULL,
  rating REAL,
  timestamp TEXT NOT NULL,                 -- ISO 8601, UTC
  category TEXT NOT NULL,                  -- the item's, from the model's catalog ('' if it has none)
  request_id TEXT,
  received_at TEXT NOT NULL,
  idempotency_key TEXT                     -- the client's, optional; unique (index below)
);
CREATE TABLE IF NOT EXISTS delivered (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL)"""


def utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # a timestamp without zone is taken as UTC
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def contract_row(event: dict) -> dict:
    """A stored event as an interactions row; the request it answered goes into `features`."""
    return {
        contract.USER_ID: event["user_id"],
        contract.ITEM_ID: event["item_id"],
        contract.INTERACTION_TYPE: event["interaction_type"],
        contract.RATING: event["rating"],
        contract.TIMESTAMP: event["timestamp"],
        contract.CATEGORY: event["category"],
        contract.FEATURES: json.dumps({"request_id": event["request_id"]}) if event["request_id"] else None,
    }


class SequencedTable:
    """The BigQuery sink's view of a table whose rows carry an increasing `seq`: its rows in arrival order,
    and how far each sink has them (the `delivered` table). Subclasses open `_db` and `_lock` and name the
    table and the columns the sink reads."""

    TABLE: str
    COLUMNS: tuple[str, ...]

    def events(self, after_seq: int = 0, limit: int = -1) -> list[dict]:
        """Stored rows in arrival order, after `after_seq`."""
        with self._lock:
            cursor = self._db.execute(
                f"SELECT seq, {', '.join(self.COLUMNS)} FROM {self.TABLE} WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def count_after(self, after_seq: int) -> int:
        """How many stored rows came after `after_seq`."""
        with self._lock:
            return self._db.execute(
                f"SELECT count(*) FROM {self.TABLE} WHERE seq > ?", (after_seq,)
            ).fetchone()[0]

    def delivered(self, sink: str) -> int:
        """The seq up to which `sink` has every row."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM delivered WHERE sink = ?", (sink,)).fetchone()
        return row[0] if row else 0

    def mark_delivered(self, sink: str, seq: int):
        with self._lock:
            self._db.execute(
                "INSERT INTO delivered (sink, seq) VALUES (?, ?) "
                "ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq",
                (sink, seq),
            )


class FeedbackStore(SequencedTable):
    TABLE = "feedback"
    COLUMNS = (
        "event_id",
        "user_id",
        "item_id",
        "interaction_type",
        "rating",
        "timestamp",
        "category",
        "request_id",
    )

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit survives a crash of the machine, not only ours
        self._db.executescript(SCHEMA)
        with self._transaction():  # databases from before idempotency keys get the column
            if "idempotency_key" not in [c[1] for c in self._db.execute("PRAGMA table_info(feedback)")]:
                self._db.execute("ALTER TABLE feedback ADD COLUMN idempotency_key TEXT")
            self._db.execute(
                "CREATE UNIQUE INDEX IF NOT EXISTS feedback_idempotency_key ON feedback (idempotency_key)"
            )  # NULLs (no key) never collide

    @contextlib.contextmanager
    def _transaction(self):
        with self._lock:
            self._db.execute(
                "BEGIN IMMEDIATE"
            )  # the write lock first: no other writer between look-up and insert
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def accept(self, events: list[dict]) -> list[tuple[str, bool]]:
        """Stores events (user_id, item_id, interaction_type, rating, timestamp, category, request_id,
        idempotency_key) in one transaction; returns each one's (event_id, stored) once committed. An event
        whose idempotency_key is already stored (or comes earlier in `events`) is a client's retry: it is not
        stored again and gets the first event's id with stored False."""
        now = utc_iso(datetime.now(timezone.utc))
        accepted, rows, keys = [], [], {}
        with self._transaction():
            for e in events:
                key = e.get("idempotency_key")
                if key is not None and key not in keys:
                    first = self._db.execute(
                        "SELECT event_id FROM feedback WHERE idempotency_key = ?", (key,)
                    ).fetchone()
                    if first:
                        keys[key] = first[0]
                if key in keys:  # a retry of an event stored before, or earlier in `events`
                    accepted.append((keys[key], False))
                    continue
                event_id = uuid.uuid4().hex
                if key is not None:
                    keys[key] = event_id
                rows.append(
                    (
                        event_id,
                        e["user_id"],
                        e["item_id"],
                        e["interaction_type"],
                        e.get("rating"),
                        utc_iso(e["timestamp"]) if e.get("timestamp") else now,
                        e.get("category") or "",
                        e.get("request_id"),
                        now,
                        key,
                    )
                )
                accepted.append((event_id, True))
            self._db.executemany(
                "INSERT INTO feedback (event_id, user_id, item_id, interaction_type, rating, timestamp, "
                "category, request_id, received_at, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return accepted

    def add_delivered(self, events: list[dict]):
        """Stores events the shared store accepted (proxy/feedback_delivery.py), with their event ids and
        arrival times; an event delivered again is stored once. Idempotency keys stay with the shared store,
        which answered the retries."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO feedback (event_id, user_id, item_id, interaction_type, rating, timestamp, "
                "category, request_id, received_at) VALUES (:event_id, :user_id, :item_id, "
                ":interaction_type, :rating, :timestamp, :category, :request_id, :received_at) "
                "ON CONFLICT (event_id) DO NOTHING",
                events,
            )

    def append(self, events: list[dict]) -> list[str]:
        """As accept(), only the event ids."""
        return [event_id for event_id, _ in self.accept(events)]

    def accept_groups(self, groups: list[list[dict]]) -> list[list[tuple[str, bool]]]:
        """Stores several requests' events in one transaction (idempotency keys shared by them included);
        returns each request's (event_id, stored) pairs."""
        accepted = iter(self.accept([event for group in groups for event in group]))
        return [[next(accepted) for _ in group] for group in groups]

    def count_by_type(self) -> dict[str, int]:
        with self._lock:
            return dict(
                self._db.execute("SELECT interaction_type, count(*) FROM feedback GROUP BY 1").fetchall()
            )

    def count_by_period(self, periods: list[str]) -> list[tuple[str, str, int]]:
        """(period, interaction_type, count) of the events whose ISO timestamps start with one of `periods`,
        prefixes of one length, oldest first ("2024-05-01T12": the hour)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT substr(timestamp, 1, ?), interaction_type, count(*) FROM feedback "
                "WHERE timestamp >= ? GROUP BY 1, 2",
                (len(periods[0]), periods[0]),
            ).fetchall()
        wanted = set(periods)
        return [row for row in rows if row[0] in wanted]

    def export(self, out_dir: str) -> str:
        """Writes every event as out_dir/interactions-feedback.csv (the interactions contract); returns its
        path."""
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, EXPORT_FILE)
        with open(path + ".tmp", "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(contract.INTERACTION_COLUMNS)
            for e in map(contract_row, self.events()):
                writer.writerow([e[c] for c in contract.INTERACTION_COLUMNS])
        os.replace(path + ".tmp", path)  # a reader never sees half a file
        return path

    def close(self):
        self._db.close()
