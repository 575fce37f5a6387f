"""Template helpers of the status pages: live badges, money, tokens, short ids."""

import json

from django import template

from core import live
from core.ids import short_id

register = template.Library()


@register.simple_tag
def badge(entity_type, pk, status):
    """A badge the live script keeps current: {% badge "thread" thread.pk thread.status %}."""
    return live.badge(entity_type, pk, status)


@register.filter
def money(value):
    return live.money(value)


@register.filter
def tokens(value):
    return live.tokens(value)


@register.filter
def when(value, precision="s"):
    """A moment with its date, seconds and zone: {{ run.created_at|when }} ("ms": with
    milliseconds)."""
    return live.when(value, precision)


@register.filter
def duration(start, end=None):
    """How long from start to end (default: now): {{ run.started_at|duration:run.finished_at }}."""
    return live.duration(start, end)


@register.filter
def short(value):
    return short_id(value) if value else ""


@register.filter
def pretty(value):
    """A JSON value, indented (escaped by the template)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


@register.simple_tag
def status_url(obj):
    """The status page of a session, thread or run; "" for anything else."""
    try:
        return live.status_url(obj)
    except ValueError:
        return ""
