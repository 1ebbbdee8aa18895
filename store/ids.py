"""Row ids: UUID-shaped strings that start with the time (UUIDv7 layout), so new rows land at
the end of primary-key indexes instead of at random places in them."""
from __future__ import annotations

import os
import time
import uuid


def new_id() -> str:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | rand
    # Version 7 and the RFC 4122 variant, as the layout prescribes.
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))
