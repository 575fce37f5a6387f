"""The API's rate limit: requests per user in fixed windows, one counter per window.

ninja's ``AuthRateThrottle`` (like DRF's) keeps the time of every request of the window
in one cache entry and rewrites the whole list on each request: at 6000/m that is up to
6000 floats pickled both ways per request, more work the busier the user is, and Django's
cache in memory is per process. Here a request costs one increment: of a Redis key
shared by every server process in production (one INCR on a client the process keeps),
of a local-memory cache in embedded mode (one process).
"""

import redis
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from ninja.throttling import AuthRateThrottle


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
    """Counters in Redis, so that every server process counts against the same limit."""

    def __init__(self, url: str, prefix: str = "statehouse:throttle:"):
        self.client = redis.Redis.from_url(url)
        self.prefix = prefix

    def incr(self, key: str, ttl: float) -> int:
        count = self.client.incr(self.prefix + key)
        if count == 1:  # the window's first request; its key names the window anyway
            self.client.expire(self.prefix + key, int(ttl) + 1)
        return count


class UserRateThrottle(AuthRateThrottle):
    """At most ``num_requests`` per ``duration`` seconds per user (a window may see up
    to twice that across its boundary with the next one, as fixed windows do)."""

    def __init__(self, rate: str):
        super().__init__(rate)
        self._counter: LocalCounter | RedisCounter | None = None

    @property
    def counter(self) -> LocalCounter | RedisCounter:
        if self._counter is None:
            url = settings.REDIS_URL
            self._counter = RedisCounter(url) if url else LocalCounter()
        return self._counter

    def get_cache_key(self, request) -> str | None:
        user = getattr(request, "auth", None)
        if user is None or getattr(user, "pk", None) is None:
            return None  # unauthenticated requests are refused before throttling
        return f"{user.pk}:{int(self.timer() // self.duration)}"

    def allow_request(self, request) -> bool:
        key = self.get_cache_key(request)
        if key is None:
            return True
        return self.counter.incr(key, self.duration) <= self.num_requests

    def wait(self) -> float:
        """Seconds until the current window ends."""
        return self.duration - self.timer() % self.duration
