"""/metrics (Prometheus) and /healthz."""

import asyncio
import hmac
import logging

from asgiref.sync import sync_to_async
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import app as celery_app
from control_room import metrics
from core.time import now

logger = logging.getLogger(__name__)


def _metrics_allowed(request) -> bool:
    token = settings.STATEHOUSE_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())
    user = getattr(request, "user", None)
    return bool(user and user.is_active and user.is_staff)


@never_cache
@require_GET
def metrics_view(request):
    """Prometheus text format; a bearer token (STATEHOUSE_METRICS_TOKEN) or a staff login."""
    if not _metrics_allowed(request):
        if not request.headers.get("Authorization") and not request.user.is_authenticated:
            response = HttpResponse("authentication required\n", status=401)
            response["WWW-Authenticate"] = 'Bearer realm="statehouse-metrics"'
            return response
        raise PermissionDenied
    body, content_type = metrics.render()
    return HttpResponse(body, content_type=content_type)


HEALTH_TIMEOUT_S = 3.0


def _check_database() -> None:
    for alias in connections:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()


def _check_broker() -> None:
    with celery_app.connection_for_write(url=settings.CELERY_BROKER_URL) as connection:
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0.2, timeout=HEALTH_TIMEOUT_S
        )


def channel_layer_for_check():
    """A channel layer instance of the check's own, closed after it: the check neither
    waits behind the process's live feeds nor leaves its connection to them."""
    if DEFAULT_CHANNEL_LAYER not in settings.CHANNEL_LAYERS:
        return None
    return channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)


async def _check_channel_layer() -> None:
    layer = channel_layer_for_check()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    try:
        # Listening first: a pub/sub layer delivers only to channels already listened to.
        channel = await layer.new_channel("healthz.")
        token = now().isoformat()
        await layer.send(channel, {"type": "healthz.ping", "token": token})
        message = await layer.receive(channel)
        if message.get("token") != token:
            raise RuntimeError("the channel layer returned another message")
    finally:
        if isinstance(layer, RedisPubSubChannelLayer):
            await layer.flush()  # this layer's flush closes its connection (nothing else)


async def _run_check(name: str, check, thread_sensitive: bool = False) -> tuple[str, bool]:
    try:
        if asyncio.iscoroutinefunction(check):
            await asyncio.wait_for(check(), HEALTH_TIMEOUT_S)
        else:
            # The database check runs where the request's ORM work runs (its connection
            # is closed with the request); the broker check in a thread of its own.
            call = sync_to_async(check, thread_sensitive=thread_sensitive)
            await asyncio.wait_for(call(), HEALTH_TIMEOUT_S + 2)
    except Exception as exc:
        logger.warning("health check %s failed: %s: %s", name, type(exc).__name__, exc)
        return name, False
    return name, True


@never_cache
async def healthz(request):
    """200 with each component "ok", or 503 naming those that "failed" (nothing more)."""
    results = await asyncio.gather(
        _run_check("database", _check_database, thread_sensitive=True),
        _run_check("broker", _check_broker),
        _run_check("channel_layer", _check_channel_layer),
    )
    checks = {name: "ok" if ok else "failed" for name, ok in results}
    healthy = all(ok for _name, ok in results)
    body = {"status": "ok" if healthy else "failed", "checks": checks}
    if not healthy:
        body["failed"] = [name for name, ok in results if not ok]
    return JsonResponse(body, status=200 if healthy else 503, json_dumps_params={"indent": 1})
