from django import template

from control_room.views import usage

register = template.Library()


@register.filter
def money(value):
    """Dollars: cents above a dollar, significant digits below; a dash when unpriced."""
    return usage.money(value)


@register.filter
def tokens(value):
    """Token counts, shortened (12.3k, 4.5M) from ten thousand on."""
    return usage.tokens(value)


@register.filter
def count(value):
    """A whole number with thousands separators."""
    try:
        return f"{int(value or 0):,}"
    except (TypeError, ValueError):
        return value
