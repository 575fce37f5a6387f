"""Logging an outage of a service once, not once per request.

Redis being down is seen by every request, push and sweep; logging each failure would
flood the log with the same line. ``OutageLog`` logs the first failure, then at most one
line per ``every`` seconds (with how many failures it did not log), and one line when the
service answers again.
"""

import logging
import threading
import time


class OutageLog:
    def __init__(self, logger: logging.Logger, what: str, every: float = 60.0):
        self.logger = logger
        self.what = what
        self.every = every
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._logged_at = 0.0
        self._unlogged = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, exc: BaseException) -> None:
        moment = time.monotonic()
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = moment
            elif moment - self._logged_at < self.every:
                self._unlogged += 1
                return
            unlogged, self._unlogged, self._logged_at = self._unlogged, 0, moment
        more = f" ({unlogged} more failures since the last report)" if unlogged else ""
        self.logger.warning("%s: %s: %s%s", self.what, type(exc).__name__, exc, more)

    def recovered(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            since, self._down_since, self._unlogged = self._down_since, None, 0
        if since is not None:
            self.logger.warning(
                "%s: answering again after %.1f s", self.what, time.monotonic() - since
            )
