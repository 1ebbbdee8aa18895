"""Row ids: new_ids makes what new_id makes (UUIDv7: the time first, version 7, the RFC 4122
variant), many at a time, unique, in the order they are handed out."""
import time
import uuid

from store.ids import new_id, new_ids


def _checked(text: str) -> uuid.UUID:
    value = uuid.UUID(text)
    assert str(value) == text
    assert value.version == 7 and value.variant == uuid.RFC_4122
    return value


def test_new_ids_are_uuid7_unique_and_in_order():
    before = time.time_ns() // 1_000_000
    ids = new_ids(20_000)
    after = time.time_ns() // 1_000_000
    assert len(ids) == len(set(ids)) == 20_000
    assert ids == sorted(ids)
    for text in ids:
        assert before <= _checked(text).int >> 80 <= after
    # Random where it must be: every hex digit of the random part varies.
    for position in (15, 20, 21, 35):
        assert len({text[position] for text in ids}) == 16
    # The variant's nibble is 8, 9, a or b, as in new_id's.
    assert {text[19] for text in ids} == set("89ab")
    _checked(new_id())
    assert new_ids(0) == []
