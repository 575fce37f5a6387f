"""Keyset pagination of Statehouse's own lists, through django-ninja's ``@paginate``: a
route returns its queryset, the pagination takes one page of it and says where the next
page starts. Pages never shift under inserts (no offsets)."""

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from django.db.models import Q
from ninja import Field, Schema
from ninja.errors import HttpError
from ninja.pagination import PaginationBase

from api.common import MAX_INT, page_size

MAX_ID = 2**62


def encode_cursor(created_at: datetime, pk) -> str:
    raw = json.dumps([created_at.isoformat(), str(pk)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, pk = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created_at), str(uuid.UUID(pk))
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise HttpError(400, "cursor is not valid: pass next_cursor from a previous page") from None


class NewestFirst(PaginationBase):
    """Newest first by (created_at, id); ``next_cursor`` (opaque) leads to the next page."""

    class Input(Schema):
        limit: int = Field(50, ge=1, le=MAX_INT)
        cursor: str | None = None

    class Output(Schema):
        items: list[Any]
        next_cursor: str | None

    items_attribute = "items"

    def paginate_queryset(self, queryset, pagination: Input, request, **params) -> dict:
        queryset = queryset.order_by("-created_at", "-id")
        if pagination.cursor:
            created_at, pk = decode_cursor(pagination.cursor)
            queryset = queryset.filter(
                Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk)
            )
        size = page_size(pagination.limit)
        rows = list(queryset[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        last = rows[-1] if more else None
        return {
            "items": rows,
            "next_cursor": encode_cursor(last.created_at, last.pk) if last else None,
        }


class AfterId(PaginationBase):
    """Oldest first by id, after ``after_id``; ``next_after_id`` is the next page's, or
    None on a page shorter than ``limit``."""

    class Input(Schema):
        limit: int = Field(100, ge=1, le=MAX_INT)
        after_id: int = Field(0, ge=0, le=MAX_ID)

    class Output(Schema):
        items: list[Any]
        next_after_id: int | None

    items_attribute = "items"

    def paginate_queryset(self, queryset, pagination: Input, request, **params) -> dict:
        size = page_size(pagination.limit)
        rows = list(queryset.filter(pk__gt=pagination.after_id).order_by("pk")[:size])
        return {"items": rows, "next_after_id": rows[-1].pk if len(rows) == size else None}


class BeforeId(PaginationBase):
    """Newest first by id, before ``before_id``; ``next_before_id`` is the next page's,
    or None on a page shorter than ``limit``."""

    class Input(Schema):
        limit: int = Field(100, ge=1, le=MAX_INT)
        before_id: int | None = Field(None, ge=1, le=MAX_ID)

    class Output(Schema):
        items: list[Any]
        next_before_id: int | None

    items_attribute = "items"

    def paginate_queryset(self, queryset, pagination: Input, request, **params) -> dict:
        if pagination.before_id:
            queryset = queryset.filter(pk__lt=pagination.before_id)
        size = page_size(pagination.limit)
        rows = list(queryset.order_by("-id")[:size])
        return {"items": rows, "next_before_id": rows[-1].pk if len(rows) == size else None}
