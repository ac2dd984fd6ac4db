"""Where endpoint health lives: in this process, or in Redis for every process that routes AI calls.

Taking a request before a call (the hot path) is one Lua script: it refills both token buckets,
checks the circuit, the probe and any 429 wait, and takes the request — or claims the half-open
probe — atomically, in one round trip (``ACQUIRE``; the same rules as ``EndpointHealth.acquire``,
and the same contract tests). What a call's outcome changes (a fault that opens the circuit, a 429
wait, success, budgets reconciled from provider headers) runs the one state machine of
``health.py`` inside a Redis optimistic transaction: WATCH the endpoint's hash, read it, apply,
MULTI/EXEC, again if another process changed it meanwhile. So two processes never both take the
last request of a minute's budget, and exactly one sends the probe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from heablcoin_mcp.core.llm.health import EndpointHealth
from heablcoin_mcp.core.monitor.health import ComponentHealth
from heablcoin_mcp.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")
KEY_TTL_SECONDS = 7 * 86400  # an endpoint nobody called for a week starts afresh
INSTALL_HINT = "pip install 'heablcoin-mcp[redis]' to use HEABLCOIN_REDIS_URL"

# KEYS[1]: the endpoint's hash. ARGV: now, tokens wanted, request capacity, token capacity (0: none),
# probe lease, key TTL. Returns 1 (taken) or 0, then the hash as it now is.
ACQUIRE = """
local key, now, wanted = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local req_cap, tok_cap, lease, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local raw, h = redis.call('HGETALL', key), {}
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
local function num(name) local v = h[name]; if v == nil or v == '' then return nil end; return tonumber(v) end
local function level(name, cap)
  local lvl, updated = num(name .. '_level'), num(name .. '_updated')
  if lvl == nil or updated == nil then return cap end
  return math.min(cap, math.min(lvl, cap) + (now - updated) * cap / 60.0)
end
local requests = level('requests', req_cap)
local tokens = tok_cap > 0 and level('tokens', tok_cap) or nil
local function answer(taken)
  local fields = {'requests_level', tostring(requests), 'requests_updated', tostring(now)}
  if tokens ~= nil then
    table.insert(fields, 'tokens_level'); table.insert(fields, tostring(tokens))
    table.insert(fields, 'tokens_updated'); table.insert(fields, tostring(now))
  end
  if taken == 1 and num('open_until') ~= nil then
    table.insert(fields, 'probe_started'); table.insert(fields, tostring(now))
  end
  if next(h) == nil then
    for _, name in ipairs({'consecutive_faults', '0', 'trips', '0', 'reason', 'no calls yet'}) do
      table.insert(fields, name)
    end
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('EXPIRE', key, ttl)
  local result = {taken}
  local now_raw = redis.call('HGETALL', key)
  for i = 1, #now_raw do table.insert(result, now_raw[i]) end
  return result
end
local open_until, probe = num('open_until'), num('probe_started')
if open_until ~= nil then
  if now >= open_until and not (probe ~= nil and now < probe + lease) then
    requests = requests - 1
    return answer(1)
  end
  return answer(0)
end
local limited = num('rate_limited_until')
if limited ~= nil and now < limited then return answer(0) end
if requests < 1 or (tokens ~= nil and tokens < wanted) then return answer(0) end
requests = requests - 1
return answer(1)
"""


class HealthStore(Protocol):
    shared: bool

    def read(self, name: str, health: EndpointHealth) -> None: ...

    def change(self, name: str, health: EndpointHealth, apply: Callable[[EndpointHealth], T]) -> T: ...

    def acquire(self, name: str, health: EndpointHealth, tokens: int) -> bool: ...

    def forget(self, name: str) -> None: ...

    def close(self) -> None: ...


class LocalHealth:
    """Per-process memory: the state object is the state."""

    shared = False

    def read(self, name: str, health: EndpointHealth) -> None:
        return None

    def change(self, name: str, health: EndpointHealth, apply: Callable[[EndpointHealth], T]) -> T:
        return apply(health)

    def acquire(self, name: str, health: EndpointHealth, tokens: int) -> bool:
        return health.acquire(tokens)

    def forget(self, name: str) -> None:
        return None

    def close(self) -> None:
        return None


class RedisHealth:
    shared = True

    def __init__(self, url: str, *, prefix: str = "heablcoin:ai:") -> None:
        try:
            import redis
        except ImportError:
            raise ConfigError("HEABLCOIN_REDIS_URL is set but the redis package is not installed",
                              hint=INSTALL_HINT) from None
        self.client: Any = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5,
                                                socket_connect_timeout=5, health_check_interval=30)
        self.prefix = prefix
        self._watch_error = redis.WatchError
        self._acquire = self.client.register_script(ACQUIRE)

    def key(self, name: str) -> str:
        return f"{self.prefix}endpoint:{name}"

    def read(self, name: str, health: EndpointHealth) -> None:
        health.load(self.client.hgetall(self.key(name)))

    def change(self, name: str, health: EndpointHealth, apply: Callable[[EndpointHealth], T]) -> T:
        key = self.key(name)
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    health.load(pipe.hgetall(key))
                    result = apply(health)
                    pipe.multi()
                    pipe.hset(key, mapping=health.dump())
                    pipe.expire(key, KEY_TTL_SECONDS)
                    pipe.execute()
                    return result
                except self._watch_error:  # another process changed it first: read again, decide again
                    continue

    def acquire(self, name: str, health: EndpointHealth, tokens: int) -> bool:
        """One round trip: take a request (or the probe) if the endpoint may be called now."""
        taken, *fields = self._acquire(keys=[self.key(name)], args=[
            health.now(), tokens, health.requests.capacity, health.tokens.capacity if health.tokens else 0,
            health.policy.probe_lease, KEY_TTL_SECONDS])
        health.load(dict(zip(fields[::2], fields[1::2], strict=True)))
        return bool(taken)

    def forget(self, name: str) -> None:
        self.client.delete(self.key(name))

    def component_health(self) -> ComponentHealth:
        try:
            started = time.perf_counter()
            self.client.ping()
            latency_ms = (time.perf_counter() - started) * 1000
        except Exception as exc:  # health must report, not raise
            log.warning("redis unreachable: %s", type(exc).__name__)
            return ComponentHealth(name="redis", status="down", detail=type(exc).__name__)
        return ComponentHealth(name="redis", status="ok", detail="AI endpoint health and budgets shared",
                               metrics={"latency_ms": round(latency_ms, 2)})

    def close(self) -> None:
        self.client.close()
