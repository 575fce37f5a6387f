"""The API's rate limits: requests per user, and failed-authentication requests per client
address, in fixed windows, one counter per window.

ninja's ``AuthRateThrottle`` (like DRF's) keeps the time of every request of the window
in one cache entry and rewrites the whole list on each request: at 6000/m that is up to
6000 floats pickled both ways per request, more work the busier the user is, and Django's
cache in memory is per process. Here a request costs one increment: of a Redis key
shared by every server process in production (one INCR on a client the process keeps),
of a local-memory cache in embedded mode (one process).

The limits fail open: when Redis cannot be reached, requests are let through (they need
only the database) and the outage is logged once a minute; the counter tries Redis again
a second later, so it recovers by itself.
"""

import ipaddress
import logging
import time
from functools import cached_property

import redis
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from ninja.throttling import AuthRateThrottle, SimpleRateThrottle
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.outages import OutageLog

logger = logging.getLogger(__name__)


class LocalCounter:
    """Counters in this process's memory (embedded mode: one process), kept in a
    local-memory cache of their own, which expires and culls them."""

    def __init__(self):
        self.cache = LocMemCache("statehouse-throttle", {"OPTIONS": {"MAX_ENTRIES": 10_000}})

    def incr(self, key: str, ttl: float) -> int:
        if self.cache.add(key, 1, ttl + 1):  # the window's first request
            return 1
        try:
            return self.cache.incr(key)
        except ValueError:  # expired between the two calls
            self.cache.set(key, 1, ttl + 1)
            return 1


class RedisCounter:
    """Counters in Redis, so that every server process counts against the same limit.

    ``incr`` returns None when Redis does not answer (within ``timeout``, no retries); for
    ``retry_after`` seconds after a failure it does not try again (a request then costs
    nothing), and then reconnects on its own.
    """

    retry_after = 1.0
    outage = OutageLog(logger, "API rate limit off: Redis unreachable")

    def __init__(self, url: str, prefix: str = "statehouse:throttle:", timeout: float = 0.5):
        self.client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.prefix = prefix
        self._skip_until = 0.0

    def incr(self, key: str, ttl: float) -> int | None:
        if time.monotonic() < self._skip_until:
            return None
        try:
            count = self.client.incr(self.prefix + key)
            if count == 1:  # the window's first request; its key names the window anyway
                self.client.expire(self.prefix + key, int(ttl) + 1)
        except redis.RedisError as exc:
            self._skip_until = time.monotonic() + self.retry_after
            self.outage.failed(exc)
            return None
        self.outage.recovered()
        return count


def shared_counter() -> LocalCounter | RedisCounter:
    url = settings.REDIS_URL
    return RedisCounter(url) if url else LocalCounter()


class WindowCounting:
    """Fixed windows of ``duration`` seconds, one counter per key and window."""

    num_requests: int
    duration: int
    timer = time.time

    @cached_property
    def counter(self) -> LocalCounter | RedisCounter:
        return shared_counter()

    def window(self) -> int:
        return int(self.timer() // self.duration)

    def count(self, key: str) -> int | None:
        """This request's number in its window (None: not counted, Redis is down)."""
        return self.counter.incr(key, self.duration)

    def wait(self) -> float:
        """Seconds until the current window ends."""
        return self.duration - self.timer() % self.duration


class UserRateThrottle(WindowCounting, AuthRateThrottle):
    """At most ``num_requests`` per ``duration`` seconds per user (a window may see up
    to twice that across its boundary with the next one, as fixed windows do)."""

    def get_cache_key(self, request) -> str | None:
        user = getattr(request, "auth", None)
        if user is None or getattr(user, "pk", None) is None:
            return None  # unauthenticated requests are refused before throttling
        return f"{user.pk}:{self.window()}"

    def allow_request(self, request) -> bool:
        key = self.get_cache_key(request)
        if key is None:
            return True
        count = self.count(key)
        return count is None or count <= self.num_requests


def trusted_proxies() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_network(item, strict=False) for item in settings.STATEHOUSE_TRUSTED_PROXIES
    ]


def client_address(request) -> str:
    """The client's IP address: ``REMOTE_ADDR``, or when that is a trusted proxy
    (STATEHOUSE_TRUSTED_PROXIES), the right-most ``X-Forwarded-For`` address that is not
    one (what nginx's ``real_ip_recursive`` does). Without trusted proxies the header is
    ignored: anyone can send it."""
    remote = request.META.get("REMOTE_ADDR") or ""
    proxies = trusted_proxies()

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in proxies)

    if not proxies or not trusted(remote):
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not trusted(hop):
            return hop
    return remote


class FailedAuthLimit(WindowCounting, SimpleRateThrottle):
    """At most ``num_requests`` per ``duration`` seconds per client address for requests
    that fail authentication (no credentials, a wrong or revoked key). Counted when the
    API answers 401, so a client that authenticates is never refused by it (an attacker
    behind the same address as real users does not lock them out)."""

    def get_cache_key(self, request) -> str:
        return f"anon:{client_address(request)}:{self.window()}"

    def allow_request(self, request) -> bool:
        count = self.count(self.get_cache_key(request))
        return count is None or count <= self.num_requests
