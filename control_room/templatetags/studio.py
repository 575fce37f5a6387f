"""Template helpers of the offline Studio: state values as collapsible trees."""

import json

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from control_room.studio import is_conversation
from core import live

register = template.Library()

OPEN_DEPTH = 1  # levels shown open; deeper ones start collapsed
MAX_DEPTH = 40


def _scalar(value) -> str:
    return format_html(
        '<code class="sh-json-{}">{}</code>', type(value).__name__, json.dumps(value, default=str)
    )


def _conversation(items) -> str:
    rows = format_html_join(
        "",
        '<li class="sh-message sh-role-{0}"><span class="sh-role">{0}</span>'
        '<div class="sh-text">{1}</div></li>',
        (
            (
                live.message_role(item.get("type") or item.get("role")),
                live.message_text(item.get("content")),
            )
            for item in items
        ),
    )
    return format_html('<ol class="sh-message-list sh-conversation">{}</ol>', rows)


def _tree(value, depth: int, key=None) -> str:
    if depth > MAX_DEPTH:
        return _scalar(str(value))
    if key == "messages" and is_conversation(value):
        body = _conversation(value)
        summary = f"{len(value)} message{'s' if len(value) != 1 else ''}"
    elif isinstance(value, dict) and value:
        body = format_html(
            '<dl class="sh-json">{}</dl>',
            format_html_join(
                "",
                "<dt>{}</dt><dd>{}</dd>",
                ((name, _tree(item, depth + 1, name)) for name, item in value.items()),
            ),
        )
        summary = f"{{{len(value)} key{'s' if len(value) != 1 else ''}}}"
    elif isinstance(value, list) and value:
        body = format_html(
            '<ol class="sh-json" start="0">{}</ol>',
            format_html_join("", "<li>{}</li>", ((_tree(item, depth + 1),) for item in value)),
        )
        summary = f"[{len(value)} item{'s' if len(value) != 1 else ''}]"
    else:
        return _scalar(value)
    return format_html(
        '<details class="sh-json-node"{}><summary>{}</summary>{}</details>',
        mark_safe(" open") if depth < OPEN_DEPTH else "",
        summary,
        body,
    )


@register.filter
def json_tree(value):
    """A JSON value as nested <details> (objects and lists collapsible)."""
    return _tree(value, 0)
