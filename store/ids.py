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


def new_ids(n: int) -> list[str]:
    """`n` ids as `new_id` makes them, sharing one clock reading and one getrandom(2) call:
    a bulk writer (an import batch) makes thousands at a time, and `new_id` costs 3 µs each."""
    ms = f"{(time.time_ns() // 1_000_000) & ((1 << 48) - 1):012x}"
    head = f"{ms[:8]}-{ms[8:]}-7"
    rand = os.urandom(10 * n).hex()
    # 80 random bits per id, 74 of them used: 12 after the version nibble, 2 in the variant's
    # nibble (whose top bits are 10), 60 after it. Sorted: ids made together sort in the
    # order they are handed out, as `new_id`'s made one after the other mostly do (a row's id
    # breaks ties between rows of one time, e.g. the order İYS receives consents in).
    return sorted(f"{head}{rand[i:i + 3]}-{_VARIANT[rand[i + 3]]}{rand[i + 4:i + 7]}-"
                  f"{rand[i + 7:i + 19]}" for i in range(0, 20 * n, 20))


_VARIANT = {f"{v:x}": f"{8 | (v & 3):x}" for v in range(16)}
