"""Request limits shared by every replica of the service, kept in Redis.

The embedded service counts in its own memory (:class:`zhichao.service.owners.RateLimiter`,
:class:`zhichao.service.login_throttle.LoginThrottle`): right for one process, but N
replicas behind a load balancer would allow N times each limit. With
``Settings.redis_url`` (``ZHICHAO_REDIS_URL``, e.g. ``redis://127.0.0.1:6379/0``) the
app uses the classes here instead, so a limit holds in total, whichever replica a request
reaches:

* :class:`RedisRateLimiter` — the same sliding window as the in-memory limiter: one sorted
  set per key (``zhichao:rl:<key>``) holding the times of the hits inside the window; a Lua
  script drops the old ones, counts, and adds the new hit only when under the limit, all
  at once on the server, with the server's clock (replicas' clocks never disagree);
* :class:`RedisLoginThrottle` — the login throttle's failure counts per account and per
  client and each account's known clients, with the same delays
  (:func:`zhichao.service.login_throttle.delay_s`); an attempt is reserved (waits read
  and the attempt counted) by one Lua script, so replicas and parallel requests cannot
  all pass the check before any of them is counted.

Redis unreachable (down, refused, timed out): **fail closed**. The guarded requests (owner
queries, staff logins) are refused with :class:`LimitBackendError` (503, zh-CN
"限流服务暂不可用，请稍后再试") and the error is logged at ERROR on every refusal. The
reasoning: these limits are what stands between the public and password guessing or
enumerating whose vehicle was fined (个人信息保护法); letting requests through unlimited
while Redis is away would drop that protection silently. Staff already signed in keep
working (their tokens are in the database), and nothing else depends on Redis. The health
route (``GET /api/v1/health``) answers ``"status": "degraded"`` while Redis is away.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from zhichao.service.errors import RateLimitedError, ServiceError
from zhichao.service.login_throttle import HELD_MAX_S, HELD_RETRY_S, LoginThrottle, delay_s
from zhichao.service.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "zhichao:"
KNOWN_CLIENTS_TTL_S = 90 * 24 * 3600  # how long a client stays "known" to an account (guess)
_KNOWN_CLIENTS_PER_ACCOUNT = 16
_TIMEOUT_S = 2.0

# KEYS[1] the window's sorted set; ARGV: limit, window in ms, a unique member.
# Returns 1 if the hit was counted, 0 if the limit is reached.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window_ms = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window_ms)
return 1
"""

# KEYS: the account's and the client's failure hashes; ARGV[1]: forget-after in ms.
# Counts one failure on each (restarting a count idle for longer than forget-after).
_FAILED = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local forget_ms = tonumber(ARGV[1])
for i = 1, #KEYS do
  local last = tonumber(redis.call('HGET', KEYS[i], 'last_ms') or '0')
  if now_ms - last > forget_ms then
    redis.call('HSET', KEYS[i], 'count', 0)
  end
  redis.call('HINCRBY', KEYS[i], 'count', 1)
  redis.call('HSET', KEYS[i], 'last_ms', now_ms)
  redis.call('PEXPIRE', KEYS[i], forget_ms)
end
return now_ms
"""

# KEYS: the account's and the client's failure hashes, the account's known clients;
# ARGV: client, free failures, base delay ms, account cap ms, client cap ms, forget ms.
# LoginThrottle.reserve at once on the server: the running wait in ms (> 0: nothing
# counted; also the hold's retry when another attempt of a client with failures is being
# checked), or after counting the attempt as a failure of the account: 0, or -1 when the
# client (with recent failures) is held by it (LoginThrottle.reserve_attempt).
# ARGV 7, 8: the hold's maximum and retry in ms.
_RESERVE = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local free = tonumber(ARGV[2])
local base_ms = tonumber(ARGV[3])
local forget_ms = tonumber(ARGV[6])
local function wait_ms(key, cap_ms)
  local last = tonumber(redis.call('HGET', key, 'last_ms') or '0')
  if now_ms - last > forget_ms then
    return 0
  end
  local n = tonumber(redis.call('HGET', key, 'count') or '0')
  if n < free then
    return 0
  end
  local delay = math.min(cap_ms, base_ms * 2 ^ math.min(n - free, 60))
  return math.max(0, last + delay - now_ms)
end
local wait = wait_ms(KEYS[2], tonumber(ARGV[5]))
local known = false
for _, c in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  if c == ARGV[1] then
    known = true
  end
end
if not known then
  wait = math.max(wait, wait_ms(KEYS[1], tonumber(ARGV[4])))
end
if wait > 0 then
  return math.ceil(wait)
end
local held = 0
local client_last = tonumber(redis.call('HGET', KEYS[2], 'last_ms') or '0')
local client_count = tonumber(redis.call('HGET', KEYS[2], 'count') or '0')
if client_count > 0 and now_ms - client_last <= forget_ms then
  local held_ms = tonumber(redis.call('HGET', KEYS[2], 'held_ms') or '0')
  if now_ms - held_ms < tonumber(ARGV[7]) then
    return tonumber(ARGV[8])
  end
  redis.call('HSET', KEYS[2], 'held_ms', now_ms)
  held = 1
end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_ms') or '0')
if now_ms - last > forget_ms then
  redis.call('HSET', KEYS[1], 'count', 0)
end
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'last_ms', now_ms)
redis.call('PEXPIRE', KEYS[1], forget_ms)
if held == 1 then
  return -1
end
return 0
"""

# KEYS: the account's and the client's failure hashes, the account's known clients;
# ARGV: client, 1 to release a reservation, known-list length, known-list TTL in s.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[3], 'held_ms', 0)
end
redis.call('LREM', KEYS[2], 0, ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return 1
"""

# KEYS: the account's and the client's failure hashes; ARGV: '1' when the client is held.
# An attempt that neither failed nor succeeded: the account's advance count is taken back,
# the client's hold ends (LoginThrottle.release).
_RELEASED = """
if tonumber(redis.call('HGET', KEYS[1], 'count') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'count', -1)
end
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'held_ms', 0)
end
return 1
"""


class Limiter(Protocol):
    """What the routes call: count one hit on ``key``, or raise
    :class:`~zhichao.service.errors.RateLimitedError` when ``limit`` hits are in the last
    ``window_s`` seconds."""

    def hit(self, key: str, *, limit: int, window_s: float) -> None: ...


class LimitBackendError(ServiceError):
    """The shared limit store (Redis) cannot be reached: the request is refused."""

    http_status = 503
    default_zh = "限流服务暂不可用，请稍后再试"


def redis_client(url: str) -> Any:
    """A Redis client with short time-outs (a dead Redis must not hang requests)."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=_TIMEOUT_S,
                                socket_connect_timeout=_TIMEOUT_S, decode_responses=True)


def _unavailable(what: str, exc: Exception) -> LimitBackendError:
    log.error("rate-limit store unreachable during %s: %s: %s (request refused: fail "
              "closed)", what, type(exc).__name__, exc)
    return LimitBackendError(f"rate-limit store unreachable ({type(exc).__name__}: {exc})")


class RedisRateLimiter:
    """Sliding-window limits in Redis, shared by every process using the same server."""

    def __init__(self, client: Any, *, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_SLIDING_WINDOW)

    def hit(self, key: str, *, limit: int, window_s: float) -> None:
        import redis

        try:
            counted = self._script(keys=[f"{self.prefix}rl:{key}"],
                                   args=[limit, max(1, int(window_s * 1000)),
                                         uuid.uuid4().hex])
        except redis.RedisError as exc:
            raise _unavailable("a rate-limit check", exc) from exc
        if not counted:
            raise RateLimitedError(f"rate limit for {key.split(':', 1)[0]}")

    def reachable(self) -> bool:
        """Whether Redis answers (the health route reports ``degraded`` when not)."""
        import redis

        try:
            return bool(self.client.ping())
        except redis.RedisError as exc:
            log.error("rate-limit store unreachable: %s: %s", type(exc).__name__, exc)
            return False


class RedisLoginThrottle(LoginThrottle):
    """:class:`LoginThrottle` with its counts in Redis (same delays, shared by replicas)."""

    def __init__(self, client: Any, *, prefix: str = PREFIX, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.prefix = prefix
        self._failed_script = client.register_script(_FAILED)
        self._reserve_script = client.register_script(_RESERVE)
        self._succeeded_script = client.register_script(_SUCCEEDED)
        self._released_script = client.register_script(_RELEASED)

    def _key(self, kind: str, key: str) -> str:
        return f"{self.prefix}login:{kind}:{key}"

    def _wait_at(self, kind: str, entry: dict[str, str], now_ms: int) -> float:
        if not entry:
            return 0.0
        last_ms = int(entry.get("last_ms", 0))
        if now_ms - last_ms > self.forget_after_s * 1000:
            return 0.0
        wait = delay_s(int(entry.get("count", 0)), free_failures=self.free_failures,
                       base_delay_s=self.base_delay_s, cap_s=self.caps_s[kind])
        return max(0.0, (last_ms - now_ms) / 1000 + wait)

    def wait_s(self, username: str, client: str) -> float:
        import redis

        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.time()
            pipe.hgetall(self._key("client", client))
            pipe.hgetall(self._key("account", username))
            pipe.lrange(self._key("known", username), 0, -1)
            (seconds, micros), by_client, by_account, known = pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable("a login check", exc) from exc
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        waits = [self._wait_at("client", by_client, now_ms)]
        if client not in known:
            waits.append(self._wait_at("account", by_account, now_ms))
        return max(waits)

    def failed(self, username: str, client: str, *, reserved: bool = False,
               client_held: bool = False) -> float:
        import redis

        keys = [self._key("client", client)]
        if not reserved:  # else reserve counted the account's already
            keys.insert(0, self._key("account", username))
        try:
            self._failed_script(keys=keys, args=[int(self.forget_after_s * 1000)])
            if client_held:  # its hold ends with the failure counted
                self.client.hset(self._key("client", client), "held_ms", 0)
        except redis.RedisError as exc:
            raise _unavailable("counting a failed login", exc) from exc
        return self.wait_s(username, client)

    def reserve_attempt(self, username: str, client: str) -> tuple[float, bool]:
        import redis

        try:
            wait_ms = self._reserve_script(
                keys=[self._key("account", username), self._key("client", client),
                      self._key("known", username)],
                args=[client, self.free_failures, self.base_delay_s * 1000,
                      self.caps_s["account"] * 1000, self.caps_s["client"] * 1000,
                      int(self.forget_after_s * 1000), int(HELD_MAX_S * 1000),
                      int(HELD_RETRY_S * 1000)])
        except redis.RedisError as exc:
            raise _unavailable("reserving a login attempt", exc) from exc
        wait_ms = int(wait_ms)
        return max(wait_ms, 0) / 1000, wait_ms == -1

    def release(self, username: str, client: str, *, client_held: bool = False) -> None:
        import redis

        try:
            self._released_script(keys=[self._key("account", username),
                                        self._key("client", client)],
                                  args=["1" if client_held else "0"])
        except redis.RedisError as exc:
            raise _unavailable("releasing a login attempt", exc) from exc

    def succeeded(self, username: str, client: str, *, client_held: bool = False) -> None:
        import redis

        try:
            self._succeeded_script(
                keys=[self._key("account", username), self._key("known", username),
                      self._key("client", client)],
                args=[client, _KNOWN_CLIENTS_PER_ACCOUNT, KNOWN_CLIENTS_TTL_S,
                      "1" if client_held else "0"])
        except redis.RedisError as exc:
            raise _unavailable("recording a login", exc) from exc


def limits_reachable(limiter: Limiter) -> bool:
    """False when the limiter keeps its counts in a store that does not answer."""
    check = getattr(limiter, "reachable", None)
    return True if check is None else bool(check())


def make_limiter(settings: Settings) -> Limiter:
    """Redis-backed when ``settings.redis_url`` is set, else the in-process limiter."""
    if settings.redis_url:
        return RedisRateLimiter(redis_client(settings.redis_url))
    from zhichao.service.owners import RateLimiter

    return RateLimiter()


def make_login_throttle(settings: Settings) -> LoginThrottle:
    """Redis-backed when ``settings.redis_url`` is set, else the in-process throttle."""
    kwargs: dict[str, Any] = {
        "free_failures": settings.login_free_failures,
        "base_delay_s": settings.login_delay_base_s,
        "max_delay_per_account_s": settings.login_delay_max_per_account_s,
        "max_delay_per_client_s": settings.login_delay_max_per_client_s}
    if settings.redis_url:
        return RedisLoginThrottle(redis_client(settings.redis_url), **kwargs)
    return LoginThrottle(**kwargs)
