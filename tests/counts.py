"""Statement counts that differ by database."""

from django.db import connection


def writes(n: int) -> int:
    """The statements of ``n`` writes made by one state manager call: one on PostgreSQL,
    which sends them together (core.write_batch), ``n`` on SQLite."""
    return 1 if connection.vendor == "postgresql" else n
