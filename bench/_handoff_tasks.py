"""bench/handoff.py's no-op task, loaded into the worker with ``--include _handoff_tasks``.

BENCH_HANDOFF_CONF (JSON) overrides Celery settings of the worker before it consumes;
the task pushes how long the message took from ``apply_async`` to the task's start.
"""

import json
import os
import time

import redis
from celery import shared_task

from config.celery import app

app.conf.update(json.loads(os.environ.get("BENCH_HANDOFF_CONF", "{}")))
_redis = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@shared_task(name="bench.handoff")
def handoff(sent_at: float) -> None:
    _redis.rpush(os.environ["BENCH_HANDOFF_KEY"], time.time() - sent_at)
