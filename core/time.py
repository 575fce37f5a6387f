"""Time helpers (the seed's TemporalManager): always timezone-aware UTC."""

from datetime import UTC, date, datetime

from django.utils.dateparse import parse_datetime


def now() -> datetime:
    return datetime.now(UTC)


def isoformat(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def parse(value: str | datetime) -> datetime:
    """Parse an ISO 8601 timestamp; a naive one is taken as UTC."""
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def day(value: datetime) -> date:
    """The UTC calendar day of a timestamp."""
    return value.astimezone(UTC).date()
