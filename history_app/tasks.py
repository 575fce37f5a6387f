"""Budget alert webhooks: signed POSTs, retried with exponential backoff by Celery.

The body is JSON; ``X-Statehouse-Signature: sha256=<hex>`` is the HMAC-SHA256 of the
exact body bytes with ``STATEHOUSE_WEBHOOK_SECRET``, so the receiver can check that the
alert came from here (compare with ``hmac.compare_digest``). The body carries the alert
id (for de-duplication: a retried delivery sends the same id) and when it was sent.
"""

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable

from celery import shared_task
from django.conf import settings

from core.time import now
from history_app.budgets import alert_payload, webhook_url_for
from history_app.models import Alert

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Statehouse-Signature"
MAX_RETRIES = 6
BACKOFF_BASE_S = 10
BACKOFF_MAX_S = 15 * 60
TIMEOUT_S = 10


class WebhookError(Exception):
    """The receiver did not take the alert (network error or non-2xx answer)."""


def sign(body: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(body: bytes, secret: str, signature: str) -> bool:
    return hmac.compare_digest(sign(body, secret), signature or "")


def backoff_seconds(retries: int) -> int:
    """Seconds before retry number ``retries + 1``: 10, 20, 40, ... capped at 15 minutes."""
    return min(BACKOFF_BASE_S * 2**retries, BACKOFF_MAX_S)


Transport = Callable[[urllib.request.Request, float], int]


def urllib_transport(request: urllib.request.Request, timeout: float) -> int:
    """POST with urllib; returns the HTTP status (raises WebhookError when unreachable)."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise WebhookError(f"cannot reach the webhook: {exc}") from None


def deliver(url: str, payload: dict, secret: str, transport: Transport = urllib_transport) -> bytes:
    """POST the signed payload; returns the body sent. Raises WebhookError on failure."""
    if not url.startswith(("http://", "https://")):
        raise WebhookError(f"not an http(s) URL: {url!r}")
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    request = urllib.request.Request(  # noqa: S310 (checked above)
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Statehouse-Alerts/1",
            SIGNATURE_HEADER: sign(body, secret),
        },
    )
    status = transport(request, TIMEOUT_S)
    if not 200 <= status < 300:
        raise WebhookError(f"the webhook answered HTTP {status}")
    return body


@shared_task(bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def send_alert_webhook(self, alert_id: int) -> str:
    """Send one alert to its webhook; retried with backoff until it is taken or given up."""
    alert = Alert.objects.select_related("budget").filter(pk=alert_id).first()
    if alert is None or alert.webhook_status == Alert.Delivery.SENT:
        return "nothing to send"
    url = webhook_url_for(alert.budget)
    secret = settings.STATEHOUSE_WEBHOOK_SECRET
    attempts = alert.webhook_attempts + 1
    if not url or not secret:
        reason = "no webhook URL" if not url else "STATEHOUSE_WEBHOOK_SECRET is not set"
        Alert.objects.filter(pk=alert.pk).update(
            webhook_status=Alert.Delivery.FAILED, webhook_error=reason
        )
        logger.error("alert %s webhook not sent: %s", alert.pk, reason)
        return reason
    payload = alert_payload(alert) | {"sent_at": now().isoformat(), "attempt": attempts}
    try:
        deliver(url, payload, secret)
    except WebhookError as exc:
        final = self.request.retries >= self.max_retries
        Alert.objects.filter(pk=alert.pk).update(
            webhook_attempts=attempts,
            webhook_error=str(exc),
            webhook_status=Alert.Delivery.FAILED if final else Alert.Delivery.PENDING,
        )
        if final:
            logger.error("alert %s webhook given up after %d attempts: %s", alert.pk, attempts, exc)
            return "failed"
        countdown = backoff_seconds(self.request.retries)
        logger.warning("alert %s webhook failed (%s); retry in %ss", alert.pk, exc, countdown)
        raise self.retry(exc=exc, countdown=countdown) from None
    Alert.objects.filter(pk=alert.pk).update(
        webhook_attempts=attempts,
        webhook_error="",
        webhook_status=Alert.Delivery.SENT,
        delivered_at=now(),
    )
    return "sent"
