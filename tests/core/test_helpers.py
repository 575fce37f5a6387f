import uuid
from datetime import UTC, datetime

import pytest

from core import ids, metadata, time


def test_now_is_aware_utc():
    assert time.now().tzinfo is UTC


def test_parse_takes_naive_timestamps_as_utc():
    assert time.parse("2026-01-02T03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        time.parse("yesterday")


def test_system_assistant_ids_match_langgraph_server():
    expected = uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "chat")
    assert ids.system_assistant_id("chat") == expected


def test_a_short_id_is_the_first_8_hex_digits():
    value = uuid.uuid4()
    assert ids.short_id(value) == ids.short_id(str(value)) == value.hex[:8]


def test_metadata_is_normalized_to_a_json_object():
    assert metadata.normalize_metadata(None) == {}
    assert metadata.normalize_metadata({"a": ("x\x00y", 1)}) == {"a": ["xy", 1]}
    with pytest.raises(metadata.InvalidJSON, match="JSON object"):
        metadata.normalize_metadata(["a"])
    with pytest.raises(metadata.InvalidJSON, match="keys must be strings"):
        metadata.normalize_metadata({1: "a"})
    with pytest.raises(metadata.InvalidJSON, match="not JSON-serializable"):
        metadata.normalize_metadata({"a": object()})


def test_text_that_is_not_valid_unicode_is_refused():
    with pytest.raises(metadata.InvalidJSON, match="not valid Unicode"):
        metadata.normalize_metadata({"a": "lone \udbbb surrogate"})
    assert metadata.json_size({"a": "héllo"}) == len('{"a":"héllo"}'.encode())
