"""The shared online store: every API instance reads and writes the same Redis-protocol server (Memorystore
for Redis or Valkey in the cloud, Debian's redis-server in the tests), so an event accepted by one instance
steers the next answer of all of them, and an event is acknowledged only once the server holds it.

Keys (one non-cluster server: the scripts name keys they derive from their arguments):
  recsys:history:<user>      list, newest first: the last HISTORY_LENGTH positive items (the query's history)
  recsys:seen:<user>         list, newest first: the items of the last SEEN_LIMIT events (what is left out)
  recsys:idempotency:<key>   the event id stored under a client's idempotency key, for IDEMPOTENCY_TTL
  recsys:feedback            stream: every accepted event until the delivery (proxy/feedback_delivery.py)
                             moved it
  recsys:feedback:count:<p>  hash, interaction type -> events whose timestamp starts with the period prefix p
  recsys:feedback:totals     hash, interaction type -> every accepted event
  recsys:monitor:impressions stream, one entry per recorded answer (its impression rows), kept
                             MONITOR_RETENTION
  recsys:monitor:events      stream, (request_id or "", item_id, interaction_type, category) of each
                             accepted event, kept MONITOR_RETENTION
The two monitor streams are where every instance's answers meet the feedback: the online metrics
(proxy/online_metrics.py) and the skew (proxy/skew.py) of any instance read them, not its own files.
A user's keys expire USER_TTL after their last event; the model still knows a user it trained on.
"""

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone

import redis
import redis.asyncio
from redis.backoff import NoBackoff

import contract
from proxy import schemas
from proxy.feedback_store import utc_iso
from serving.history import SEEN_LIMIT

PREFIX = "recsys:"
STREAM = PREFIX + "feedback"
TOTALS = PREFIX + "feedback:totals"
IDEMPOTENCY_TTL = 7 * 86400  # seconds: a client's retry of a lost 202 comes well within a week
USER_TTL = 180 * 86400  # seconds: the retraining window (config/cloud.example.yaml, bigquery.window_days)
WRITE_TIMEOUT = 2.0  # seconds for an append (with appendfsync always, the server's fsync is in it)
MONITOR_IMPRESSIONS = PREFIX + "monitor:impressions"
MONITOR_EVENTS = PREFIX + "monitor:events"
MONITOR_RETENTION = (
    48 * 3600
)  # seconds: the online metrics' windows over the shared store reach this far back

# Appends events to the stream and to their users' lists in one atomic step, each at most once per idempotency
# key. ARGV: the TTLs, the list caps, the period retention, the oldest monitor stream id to keep, then
# (idempotency key or "", event JSON) per event.
# Returns (event id, 1 if stored now | 0 if a retry of an event stored before) per event.
ACCEPT = """
local key_ttl, user_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local history_length, seen_limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local periods = cjson.decode(ARGV[5])
local monitor_min_id = ARGV[6]
local answers = {}
for i = 7, #ARGV, 2 do
  local key, event = ARGV[i], cjson.decode(ARGV[i + 1])
  local first = false
  if key ~= '' then
    first = redis.call('SET', 'recsys:idempotency:' .. key, event.event_id, 'NX', 'GET', 'EX', key_ttl)
  end
  if first then
    table.insert(answers, {first, 0})
  else
    redis.call('XADD', 'recsys:feedback', '*', 'event', ARGV[i + 1])
    local seen = 'recsys:seen:' .. event.user_id
    redis.call('LPUSH', seen, event.item_id)
    redis.call('LTRIM', seen, 0, seen_limit - 1)
    redis.call('EXPIRE', seen, user_ttl)
    if event.interaction_type ~= 'dislike' then  -- as in training: dislikes are not history
      local history = 'recsys:history:' .. event.user_id
      redis.call('LPUSH', history, event.item_id)
      redis.call('LTRIM', history, 0, history_length - 1)
      redis.call('EXPIRE', history, user_ttl)
    end
    for _, period in ipairs(periods) do
      local counts = 'recsys:feedback:count:' .. string.sub(event.timestamp, 1, period[1])
      redis.call('HINCRBY', counts, event.interaction_type, 1)
      redis.call('EXPIRE', counts, period[2])
    end
    redis.call('HINCRBY', 'recsys:feedback:totals', event.interaction_type, 1)
    local request_id = event.request_id
    if request_id == cjson.null then
      request_id = ''
    end
    redis.call('XADD', 'recsys:monitor:events', 'MINID', '~', monitor_min_id, '*',
               'request_id', request_id, 'item_id', event.item_id,
               'interaction_type', event.interaction_type, 'category', event.category)
    table.insert(answers, {event.event_id, 1})
  end
end
return answers
"""

# Loads users' recent events (oldest first) for the users the store has not seen: a user with any key already
# is skipped, so a second load changes nothing and never overwrites live events. ARGV: the TTL, the list caps,
# then (user, JSON list of [item, interaction type]) per user. Returns how many users it loaded.
LOAD = """
local user_ttl, history_length, seen_limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local loaded = 0
for i = 4, #ARGV, 2 do
  local seen, history = 'recsys:seen:' .. ARGV[i], 'recsys:history:' .. ARGV[i]
  if redis.call('EXISTS', seen, history) == 0 then
    for _, event in ipairs(cjson.decode(ARGV[i + 1])) do
      redis.call('LPUSH', seen, event[1])
      if event[2] ~= 'dislike' then
        redis.call('LPUSH', history, event[1])
      end
    end
    redis.call('LTRIM', seen, 0, seen_limit - 1)
    redis.call('LTRIM', history, 0, history_length - 1)
    redis.call('EXPIRE', seen, user_ttl)
    redis.call('EXPIRE', history, user_ttl)
    loaded = loaded + 1
  end
end
return loaded
"""


class StoreUnavailable(Exception):
    """The shared store did not answer in time, or refused."""


def client(url: str, timeout: float, asynchronous: bool = True):
    """A client of the store at url (redis://[:password@]host:port/db, rediss:// for TLS) whose every call
    fails after `timeout` seconds instead of retrying: the caller decides what a failure means."""
    module = redis.asyncio if asynchronous else redis
    return module.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=module.retry.Retry(NoBackoff(), 0),
    )


def address(url: str) -> str:
    """The store's URL without its password, for messages."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def durability_problem(info: dict) -> str | None:
    """What makes the server unfit to acknowledge feedback (from INFO persistence), or None."""
    if not info.get("aof_enabled"):
        return (
            "the store has no append-only file (appendonly no): an acknowledged event would not survive "
            "a restart"
        )
    return None


class RedisStore:
    """Users' recent items and the feedback stream on a shared Redis-protocol server."""

    def __init__(self, url: str, read_timeout: float = 0.05, history_length: int = contract.HISTORY_LENGTH):
        self.url, self.read_timeout, self.history_length = url, read_timeout, history_length
        self._reads = client(url, read_timeout)
        self._writes = client(url, WRITE_TIMEOUT)
        self._accept = self._writes.register_script(ACCEPT)
        # (prefix length, seconds its counts are kept): as many periods as /feedback/stats may ask for
        self._periods = json.dumps(
            [[chars, schemas.MAX_STATS_BUCKETS * seconds] for chars, seconds in schemas.PERIODS.values()]
        )

    async def check_durable(self):
        """Raises if the server is reachable and would lose acknowledged events on a restart; a server that is
        down is not a reason to refuse starting (the API answers degraded until it is back)."""
        try:
            problem = durability_problem(await self._writes.info("persistence"))
        except redis.RedisError:
            return
        if problem:
            raise RuntimeError(f"{address(self.url)}: {problem}")

    async def histories(self, user_ids: list[str]) -> list[tuple[list[str], list[str]]]:
        """(history oldest first, distinct seen items newest first) per user, within read_timeout."""

        async def read():
            async with self._reads.pipeline(transaction=False) as pipe:
                for user in user_ids:
                    pipe.lrange(PREFIX + "history:" + user, 0, self.history_length - 1)
                    pipe.lrange(PREFIX + "seen:" + user, 0, SEEN_LIMIT - 1)
                return await pipe.execute()

        replies = await self._call(read(), self.read_timeout)
        return [(replies[2 * n][::-1], list(dict.fromkeys(replies[2 * n + 1]))) for n in range(len(user_ids))]

    async def accept(self, events: list[dict]) -> list[tuple[str, bool]]:
        """Appends events (the columns of FeedbackStore.accept) to the stream in one atomic step; (event_id,
        stored) each once the server has them, stored False for a retry of an idempotency key seen before."""
        now = utc_iso(datetime.now(timezone.utc))
        arguments = [
            IDEMPOTENCY_TTL,
            USER_TTL,
            self.history_length,
            SEEN_LIMIT,
            self._periods,
            monitor_min_id(),
        ]
        for e in events:
            arguments += [
                e.get("idempotency_key") or "",
                json.dumps(stream_event(e, now), ensure_ascii=False),
            ]
        answers = await self._call(self._accept(args=arguments), WRITE_TIMEOUT)
        return [(event_id, bool(stored)) for event_id, stored in answers]

    async def record_impressions(self, groups: list[list[dict]]):
        """Appends each answer's impression rows (proxy/impressions.py) to the monitor stream."""

        async def append():
            async with self._writes.pipeline(transaction=False) as pipe:
                for rows in groups:
                    pipe.xadd(
                        MONITOR_IMPRESSIONS,
                        {"rows": json.dumps(rows, ensure_ascii=False)},
                        minid=monitor_min_id(),
                        approximate=True,
                    )
                return await pipe.execute()

        await self._call(append(), WRITE_TIMEOUT)

    async def users_with_history(self, limit: int) -> list[str]:
        """Some users the store holds (one SCAN step: the order is the server's)."""
        _, keys = await self._call(
            self._reads.scan(0, match=PREFIX + "seen:*", count=limit), self.read_timeout
        )
        return [k[len(PREFIX + "seen:") :] for k in keys][:limit]

    async def count_by_period(self, periods: list[str]) -> list[tuple[str, str, int]]:
        """(period, interaction type, count) of the events whose timestamps start with the given prefixes."""

        async def read():
            async with self._reads.pipeline(transaction=False) as pipe:
                for period in periods:
                    pipe.hgetall(f"{PREFIX}feedback:count:{period}")
                return await pipe.execute()

        counts = await self._call(read(), WRITE_TIMEOUT)
        return [(p, kind, int(n)) for p, by_type in zip(periods, counts) for kind, n in by_type.items()]

    async def count_by_type(self) -> dict[str, int]:
        return {
            kind: int(n) for kind, n in (await self._call(self._reads.hgetall(TOTALS), WRITE_TIMEOUT)).items()
        }

    async def _call(self, awaitable, timeout: float):
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except (redis.RedisError, OSError, asyncio.TimeoutError) as e:
            raise StoreUnavailable(f"the shared store did not answer: {e or 'timed out'}") from e

    async def close(self):
        await self._reads.aclose()
        await self._writes.aclose()


def monitor_min_id(now: float | None = None) -> str:
    """The oldest stream id the monitor streams keep (ids start with their entry's time in milliseconds)."""
    now = time.time() if now is None else now
    return f"{int((now - MONITOR_RETENTION) * 1000)}-0"


def monitor_rows(url: str, since_ms: int, until_ms: int) -> tuple[list[dict], list[dict]]:
    """The impression rows of the answers recorded in [since_ms, until_ms) by every instance, and the events
    accepted since since_ms ({"received_ms", "request_id" ("" for none), "item_id", "interaction_type",
    "category"}), from the monitor streams."""
    store = client(url, 30, asynchronous=False)
    try:
        rows = [
            row
            for _, fields in store.xrange(MONITOR_IMPRESSIONS, f"{since_ms}-0", f"({until_ms}-0")
            for row in json.loads(fields["rows"])
        ]
        events = [
            dict(fields, received_ms=int(entry_id.split("-")[0]))
            for entry_id, fields in store.xrange(MONITOR_EVENTS, f"{since_ms}-0", "+")
        ]
    finally:
        store.close()
    return rows, events


def stream_event(event: dict, received_at: str) -> dict:
    """An accepted event as the stream holds it: FeedbackStore's columns, its new id, no idempotency key."""
    return {
        "event_id": uuid.uuid4().hex,
        "user_id": event["user_id"],
        "item_id": event["item_id"],
        "interaction_type": event["interaction_type"],
        "rating": event.get("rating"),
        "timestamp": utc_iso(event["timestamp"]) if event.get("timestamp") else received_at,
        "category": event.get("category") or "",
        "request_id": event.get("request_id"),
        "received_at": received_at,
    }


def load(url: str, events, batch_users: int = 500) -> int:
    """Loads (user_id, item_id, interaction_type) events, grouped by user in time order, for the users the
    store has not seen; returns how many users it loaded. Memory holds one batch of users at a time."""
    store = client(url, 30, asynchronous=False)
    script = store.register_script(LOAD)
    loaded, batch, user, items = 0, [], None, []

    def flush():
        nonlocal loaded, batch
        if batch:
            loaded += script(args=[USER_TTL, contract.HISTORY_LENGTH, SEEN_LIMIT] + batch)
            batch = []

    for user_id, item_id, interaction_type in events:
        if user_id != user:
            if user is not None:
                batch += [user, json.dumps(items[-SEEN_LIMIT:], ensure_ascii=False)]
                if len(batch) >= 2 * batch_users:
                    flush()
            user, items = user_id, []
        items.append([item_id, interaction_type])
    if user is not None:
        batch += [user, json.dumps(items[-SEEN_LIMIT:], ensure_ascii=False)]
    flush()
    store.close()
    return loaded
