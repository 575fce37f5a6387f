"""Live status badges and status-page links, shared by the status pages and the admin.

A badge is a ``<span>`` naming its entity and id in data attributes; the page's live
script (``core/static/statehouse/live.js``) updates every badge of an entity when a state
change of it arrives on the page's feed.
"""

import contextlib
import json
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from core.ids import short_id
from core.messages import message_role

# Feeds (WebSocket paths) the pages subscribe to.
DASHBOARD_FEED = "/ws/dashboard/"


def feed_path(entity_type: str, pk) -> str:
    return f"/ws/{entity_type}s/{pk}/"


def badge(entity_type: str, pk, status: str) -> str:
    return format_html(
        '<span class="sh-badge sh-status-{}" data-live-entity="{}" data-live-id="{}">{}</span>',
        status,
        entity_type,
        pk,
        status,
    )


def status_url(obj) -> str:
    """The status page of a session, thread or run (a run's is its thread's page)."""
    entity_type = getattr(obj, "state_entity_type", "")
    if entity_type == "session":
        return reverse("status:session", args=[obj.pk])
    if entity_type == "thread":
        return reverse("status:thread", args=[obj.pk])
    if entity_type == "run":
        return reverse("status:run", args=[obj.pk])
    raise ValueError(f"no status page for {obj!r}")


@admin.display(description="status", ordering="status")
def live_status(obj) -> str:
    """An admin column (and read-only field): the status as a live badge."""
    return badge(obj.state_entity_type, obj.pk, obj.status)


@admin.display(description="live")
def status_page_link(obj) -> str:
    """An admin column (and read-only field): a link to the object's status page."""
    return format_html('<a class="sh-status-link" href="{}">status page</a>', status_url(obj))


def money(value) -> str:
    """Dollars, the one way every page writes them: cents from a dollar up, the
    significant digits below (``$0.00184``), the sign before the dollar sign
    (``-$0.00184``), ``$0`` for nothing and a dash for no price."""
    if value is None or value == "":
        return "—"
    try:
        value = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return "—"
    if value == 0:
        return "$0"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value >= 1:
        return f"{sign}${value:,.2f}"
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    if text == "0":
        return f"{sign}<$0.000001" if sign else "<$0.000001"
    return f"{sign}${text}"


TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


def when(value, precision: str = "s") -> str:
    """A moment, the one way every page writes it: date, time to the second, zone
    (``2026-12-01 07:29:43 UTC``, in the current time zone); ``precision="ms"`` adds
    milliseconds (checkpoints a few ms apart); a dash for none."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return "—"
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    if precision == "ms":
        zone = value.strftime("%Z")
        return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond // 1000:03d} {zone}".strip()
    return value.strftime(TIME_FORMAT).strip()


def duration(start, end=None) -> str:
    """How long from ``start`` to ``end`` (a timedelta, or two moments; ``end`` defaults
    to now): ``11 s``, ``4 min 12 s``, ``2 h 5 min``, ``3 d 4 h``; a dash when unknown."""
    if isinstance(start, timedelta):
        delta = start
    elif isinstance(start, datetime):
        delta = (end or timezone.now()) - start
    else:
        return "—"
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def tokens(value) -> str:
    return f"{int(value or 0):,}"


def message_text(content) -> str:
    """A message's content as text: strings as they are, text blocks joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
            else:
                parts.append(json.dumps(block, default=str, ensure_ascii=False))
        return "".join(parts)
    return json.dumps(content, default=str, ensure_ascii=False)


def tool_call_labels(calls) -> list[str]:
    """``name({"arg": ...})`` for each tool call of a message."""
    labels = []
    for call in calls or []:
        if isinstance(call, dict):
            args = json.dumps(call.get("args", {}), default=str, ensure_ascii=False)
            labels.append(f"{call.get('name', '?')}({args})")
    return labels


__all__ = [
    "DASHBOARD_FEED",
    "badge",
    "duration",
    "feed_path",
    "live_status",
    "message_role",
    "message_text",
    "money",
    "short_id",
    "status_page_link",
    "status_url",
    "tokens",
    "tool_call_labels",
    "when",
]
