"""Login throttling per account and per client: a growing delay, never a lock.

After ``free_failures`` failed logins, the next attempt must wait ``base_delay_s``, and
each further failure doubles the wait, up to a cap (``Settings.login_delay_*``):

    delay_s(n) = 0                                                n < free_failures
               = min(cap_s, base_delay_s * 2 ** (n - free_failures))   otherwise

for ``n`` failures counted per account (the user name tried) and, separately, per client
(the peer address, or what a trusted proxy said: ``Settings.forwarded_allow_ips``). An
attempt inside either wait is refused without checking the password
(:class:`LoginThrottledError`, 429, zh-CN "请 N 秒后再试"). The per-account cap is
short (60 s by default) and clients that logged into the account before skip the per-account
wait, so strangers guessing a name can slow its owner at most briefly and never lock them
out; the per-client cap is long, so one source cannot guess fast. Counts are forgotten
after ``forget_after_s`` without a failure, and a successful login clears its account's.

An attempt is **reserved** before its password is checked (:meth:`LoginThrottle.reserve`):
in one atomic step the waits are read and, when none runs, the attempt is counted as a
failure **of the account** at once. Parallel wrong passwords at one account thus see each
other's counts (checking first and counting after the slow argon2 verification let any
number through at once); a good password clears the account's count. The client's
count takes failures after their check. A client **with no recent failure** is not held
up: colleagues behind one address (an office's NAT) logging into their own accounts at
the same instant all get in. A client **with recent failures** is *held* by each attempt
while its password is checked (at most 30 s): a second attempt meanwhile is refused for
a second, so its guesses, over many accounts or at an account that knows it, are checked
one after another, each failure counted (and its wait imposed) before the next. A good
password never moves the client's wait. An attempt that neither failed nor succeeded (a
database error in between) is released (:meth:`LoginAttempt.release`). (A first version
counted every client in advance and moved its time: six officers logging in at once got
three refusals, and every good login restarted the wait of everyone behind the address; a
second counted no client in advance, and a third counted a client with failures in
advance without a hold: at the wait's cap that lengthened nothing, and a client with
failures still got 20 parallel guesses, the per-minute limit, each time its wait ended.)

State is in memory, per process (like :class:`~zhichao.service.owners.RateLimiter`);
replicas share it in Redis instead (:class:`zhichao.service.ratelimit.RedisLoginThrottle`,
``Settings.redis_url``).

The login routes call :func:`zhichao.service.accounts.authenticate` and, when it fails,
:func:`~zhichao.service.accounts.record_failed_login`; both look up the request's
:class:`LoginAttempt` (set for every HTTP request by :class:`LoginContext`, an ASGI
middleware), so the API and the console pages are throttled alike without passing it
through each route. Outside a request (CLI, tests of the functions) nothing is throttled.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from zhichao.service.body_limit import ASGIApp, Message, Receive, Scope, Send
from zhichao.service.errors import AuthenticationError
from zhichao.service.settings import Settings

_MAX_KEYS = 100_000  # forget idle entries past this, so memory stays bounded
_KNOWN_CLIENTS_PER_ACCOUNT = 16


class LoginThrottledError(AuthenticationError):
    """A login attempt inside the wait that earlier failures imposed."""

    http_status = 429
    default_zh = "登录失败次数过多，请稍后再试"

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(f"login throttled: retry after {self.retry_after_s} s",
                         f"登录失败次数过多，请 {self.retry_after_s} 秒后再试")


def delay_s(failures: int, *, free_failures: int, base_delay_s: float, cap_s: float) -> float:
    """The wait after ``failures`` failed logins (see the module docstring)."""
    if failures < free_failures:
        return 0.0
    return min(cap_s, base_delay_s * 2.0 ** min(failures - free_failures, 60))


@dataclass
class _Failures:
    count: int = 0
    last_s: float = 0.0
    held_s: float = -math.inf  # when an attempt of this client (with failures) began


#: how long a client with failures is held by one attempt at most (a request that died
#: mid-check frees it after this) [s]
HELD_MAX_S = 30.0
#: the wait told to a client with failures whose other attempt is being checked [s]
HELD_RETRY_S = 1.0


class LoginThrottle:
    """Failure counts per account and per client; thread-safe; ``clock`` injectable."""

    def __init__(self, *, free_failures: int = 3, base_delay_s: float = 1.0,
                 max_delay_per_account_s: float = 60.0, max_delay_per_client_s: float = 900.0,
                 forget_after_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if free_failures < 0 or base_delay_s <= 0 or max_delay_per_account_s < 0 \
                or max_delay_per_client_s < 0 or forget_after_s <= 0:
            raise ValueError("login throttle: counts and delays must be positive")
        self.free_failures = free_failures
        self.base_delay_s = base_delay_s
        self.caps_s = {"account": max_delay_per_account_s, "client": max_delay_per_client_s}
        self.forget_after_s = max(forget_after_s, max_delay_per_client_s,
                                  max_delay_per_account_s)
        self._clock = clock
        self._failures: dict[tuple[str, str], _Failures] = {}
        self._known: dict[str, list[str]] = {}  # account → clients that logged in
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        return cls(free_failures=settings.login_free_failures,
                   base_delay_s=settings.login_delay_base_s,
                   max_delay_per_account_s=settings.login_delay_max_per_account_s,
                   max_delay_per_client_s=settings.login_delay_max_per_client_s)

    def _wait_s(self, kind: str, key: str, now: float) -> float:
        entry = self._failures.get((kind, key))
        if entry is None or now - entry.last_s > self.forget_after_s:
            return 0.0
        wait = delay_s(entry.count, free_failures=self.free_failures,
                       base_delay_s=self.base_delay_s, cap_s=self.caps_s[kind])
        return max(0.0, entry.last_s + wait - now)

    def _wait_locked(self, username: str, client: str, now: float) -> float:
        waits = [self._wait_s("client", client, now)]
        if client not in self._known.get(username, ()):
            waits.append(self._wait_s("account", username, now))
        return max(waits)

    def _count_locked(self, username: str, client: str, now: float,
                      kinds: tuple[str, ...] = ("account", "client")) -> None:
        for kind, key in (("account", username), ("client", client)):
            if kind not in kinds:
                continue
            entry = self._failures.setdefault((kind, key), _Failures())
            if now - entry.last_s > self.forget_after_s:
                entry.count = 0
            entry.count += 1
            entry.last_s = now
        if len(self._failures) > _MAX_KEYS:
            self._forget(now)

    def wait_s(self, username: str, client: str) -> float:
        """Seconds this client must wait before trying this account (0: go ahead)."""
        now = self._clock()
        with self._lock:
            return self._wait_locked(username, client, now)

    def reserve_attempt(self, username: str, client: str) -> tuple[float, bool]:
        """Atomically: the wait still running for this client and account (> 0: refuse,
        nothing counted), or 0.0 after counting this attempt as a failure of the account
        in advance. A client with recent failures is **held** as well (the second value):
        while one of its attempts is being checked (at most :data:`HELD_MAX_S`) the next
        is refused for :data:`HELD_RETRY_S`, so its guesses are checked one after another,
        each failure counted before the next. :meth:`succeeded` or :meth:`failed` ends the
        attempt; :meth:`release` one that ended neither way (an error in between)."""
        now = self._clock()
        with self._lock:
            wait = self._wait_locked(username, client, now)
            if wait > 0:
                return wait, False
            entry = self._failures.get(("client", client))
            held = (entry is not None and entry.count > 0
                    and now - entry.last_s <= self.forget_after_s)
            if held and entry is not None:
                if now - entry.held_s < HELD_MAX_S:
                    return HELD_RETRY_S, False
                entry.held_s = now
            self._count_locked(username, client, now, ("account",))
        return 0.0, held

    def reserve(self, username: str, client: str) -> float:
        """:meth:`reserve_attempt`'s wait."""
        return self.reserve_attempt(username, client)[0]

    def failed(self, username: str, client: str, *, reserved: bool = False,
               client_held: bool = False) -> float:
        """Count a failed login (``reserved``: the account's was counted by
        :meth:`reserve_attempt`; ``client_held``: the client's hold ends); returns the wait
        it imposes on this client now."""
        now = self._clock()
        with self._lock:
            self._count_locked(username, client, now,
                               ("client",) if reserved else ("account", "client"))
            if client_held:
                self._failures[("client", client)].held_s = -math.inf
        return self.wait_s(username, client)

    def release(self, username: str, client: str, *, client_held: bool = False) -> None:
        """An attempt reserved that neither failed nor succeeded (a database error in
        between): the account's advance count is taken back and the client's hold ends."""
        with self._lock:
            entry = self._failures.get(("account", username))
            if entry is not None and entry.count > 0:
                entry.count -= 1
            client_entry = self._failures.get(("client", client))
            if client_held and client_entry is not None:
                client_entry.held_s = -math.inf

    def _forget(self, now: float) -> None:
        """Drop idle counts; if that is not enough (many names or addresses within the
        hour), the least recent ones, down to 90 % of the bound."""
        for k in [k for k, e in self._failures.items() if now - e.last_s > self.forget_after_s]:
            del self._failures[k]
        if len(self._failures) > _MAX_KEYS:
            by_age = sorted(self._failures, key=lambda k: self._failures[k].last_s)
            for k in by_age[:len(by_age) - _MAX_KEYS * 9 // 10]:
                del self._failures[k]

    def succeeded(self, username: str, client: str, *, client_held: bool = False) -> None:
        """A good password: the account's count goes (with what :meth:`reserve_attempt`
        counted); the client becomes known to it; the client's hold ends, its count and
        its wait's time stay."""
        with self._lock:
            self._failures.pop(("account", username), None)
            entry = self._failures.get(("client", client))
            if client_held and entry is not None:
                entry.held_s = -math.inf
            known = self._known.setdefault(username, [])
            if client in known:
                known.remove(client)
            known.append(client)
            del known[:-_KNOWN_CLIENTS_PER_ACCOUNT]
            if len(self._known) > _MAX_KEYS:
                self._known.clear()


@dataclass
class LoginAttempt:
    """The throttle and the client of the current request."""

    throttle: LoginThrottle
    client: str
    throttled_for_s: float = field(default=0.0)
    reserved: bool = field(default=False)  # this attempt is counted already (the account)
    client_held: bool = field(default=False)  # … and holds its client (it has failures)

    def reserve(self, username: str) -> None:
        """Refuse (:class:`LoginThrottledError`) while a wait is running; else count this
        attempt as a failure of the account before the password is checked
        (:meth:`succeeded` takes it back)."""
        wait, self.client_held = self.throttle.reserve_attempt(username, self.client)
        if wait > 0:
            self.throttled_for_s = wait
            raise LoginThrottledError(wait)
        self.reserved = True

    def succeeded(self, username: str) -> None:
        """The password was right: the account's count (the reservation with it) goes."""
        self.throttle.succeeded(username, self.client, client_held=self.client_held)
        self.reserved = self.client_held = False

    def release(self, username: str) -> None:
        """The attempt neither failed nor succeeded (an error in between): its
        reservation is taken back."""
        if self.reserved:
            self.throttle.release(username, self.client, client_held=self.client_held)
        self.reserved = self.client_held = False

    def failed(self, username: str) -> float:
        """The password was wrong (or the name impossible): counted (the account's
        already, when reserved); the wait it imposes on this client now."""
        wait = self.throttle.failed(username, self.client, reserved=self.reserved,
                                    client_held=self.client_held)
        self.reserved = self.client_held = False
        return wait


def client_key(host: str | None) -> str:
    """The client as counted: an IPv4 address as it is, an IPv6 address by its /64 (one
    site or subscriber gets a whole /64, so single addresses would be free to rotate)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


_current: ContextVar[LoginAttempt | None] = ContextVar("zhichao_login_attempt", default=None)


def current_attempt() -> LoginAttempt | None:
    """The current request's :class:`LoginAttempt` (None outside a request)."""
    return _current.get()


class LoginContext:
    """ASGI middleware: makes each HTTP request's client and the app's throttle known to
    :func:`current_attempt` (the client as the ASGI server reports it, i.e. after its
    trusted-proxy handling), and adds ``Retry-After`` to the answer of a throttled login."""

    def __init__(self, app: ASGIApp, throttle: LoginThrottle) -> None:
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client: Any = scope.get("client")
        attempt = LoginAttempt(self.throttle, client_key(client[0] if client else None))

        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start" and attempt.throttled_for_s > 0:
                seconds = str(max(1, math.ceil(attempt.throttled_for_s))).encode()
                message["headers"] = [*message.get("headers", ()), (b"retry-after", seconds)]
            await send(message)

        token = _current.set(attempt)
        try:
            await self.app(scope, receive, send_with_retry_after)
        finally:
            _current.reset(token)
