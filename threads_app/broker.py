"""The broker seen from the runtime: sending runs, and sending them again when the broker
lost their messages.

A run is a row first and a Celery message second, so the broker is never the truth:

* ``send_run`` never raises. When the broker cannot be reached the run stays pending
  (committed) and the failure is logged once a minute, not once per run.
* A Redis restart without persistence drops every queued message, and a run sent while
  Redis was unreachable has none. ``BrokerWatch`` (one thread in each worker process,
  a look every STATEHOUSE_BROKER_WATCH_S) notices that the broker came back, because it
  could not reach it or because Redis's ``run_id`` changed (a restart), and then sends
  every pending run again at once, instead of the sweeper's resend of runs pending for
  STATEHOUSE_PENDING_RESEND_S. A run sent twice is claimed once (the claim is a
  compare-and-set), so resending a run whose message survived costs a no-op task.
"""

import logging
import threading

import kombu.exceptions
import redis
from celery import signature
from django.conf import settings
from django.db import connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.outages import OutageLog
from core.time import now
from threads_app.models import Run

logger = logging.getLogger(__name__)

EXECUTE_RUN = "statehouse.execute_run"  # the task (threads_app.tasks.execute_run)

_send_outage = OutageLog(
    logger, "cannot send runs to the broker (they stay pending and are sent once it is back)"
)
_watch_outage = OutageLog(logger, "broker unreachable")


def send_run(run_id, countdown: float | None = None) -> bool:
    """Send the run to a worker; False when the broker did not take it."""
    try:
        # By name: threads_app.tasks imports this module (no import circle).
        signature(EXECUTE_RUN, args=(str(run_id),)).apply_async(countdown=countdown or None)
    except (kombu.exceptions.OperationalError, redis.RedisError, OSError) as exc:
        _send_outage.failed(exc)
        return False
    except Exception:  # not the broker's absence, but the run is committed all the same
        logger.exception("run %s: sending it failed; it stays pending", run_id)
        return False
    _send_outage.recovered()
    return True


def resend_pending(limit: int = 1000) -> int:
    """Send every pending run that is not queued behind a running one (their thread's
    current run starts them when it ends); a run due later is sent with its countdown."""
    moment = now()
    busy_threads = Run.objects.filter(status=Run.Status.RUNNING).values("thread_id")
    pending = (
        Run.objects.filter(status=Run.Status.PENDING)
        .exclude(thread_id__in=busy_threads)
        .order_by("created_at")
        .values_list("pk", "not_before")[:limit]
    )
    sent = 0
    for run_id, not_before in pending:
        delay = (not_before - moment).total_seconds() if not_before else 0
        sent += send_run(run_id, countdown=delay if delay > 0 else None)
    return sent


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


class BrokerWatch:
    """Whether the Redis broker may have lost messages since the previous look."""

    def __init__(self, url: str, timeout: float = 1.0):
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self.server_id: str | None = None
        self.unreachable = False

    def messages_lost(self) -> bool:
        """True once after Redis was unreachable or restarted (a new ``run_id``)."""
        try:
            server_id = self.client.info("server")["run_id"]
        except redis.RedisError as exc:
            self.unreachable = True
            _watch_outage.failed(exc)
            return False
        _watch_outage.recovered()
        lost = self.unreachable or (self.server_id is not None and server_id != self.server_id)
        self.server_id, self.unreachable = server_id, False
        return lost


class Watcher(threading.Thread):
    """Looks at the broker every STATEHOUSE_BROKER_WATCH_S seconds inside a worker
    process and resends the pending runs when it lost their messages."""

    def __init__(self, url: str):
        super().__init__(name="statehouse-broker-watch", daemon=True)
        self.watch = BrokerWatch(url)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(settings.STATEHOUSE_BROKER_WATCH_S):
            try:
                if self.watch.messages_lost():
                    sent = resend_pending()
                    logger.warning("broker back after an outage or restart: %d runs resent", sent)
            except Exception:
                logger.exception("broker watch failed")
            finally:
                connection.close()  # a look that queried the database must not hold it

    def stop(self) -> None:
        self.stopped.set()


_watcher: Watcher | None = None


def start_watch() -> Watcher | None:
    """Start this process's watcher (Redis brokers only; memory:// loses nothing)."""
    global _watcher
    url = settings.CELERY_BROKER_URL
    if not is_redis(url):
        return None
    if _watcher is None or not _watcher.is_alive():
        _watcher = Watcher(url)
        _watcher.start()
    return _watcher


def stop_watch() -> None:
    if _watcher is not None:
        _watcher.stop()
