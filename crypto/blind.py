"""Blind index: a keyed BLAKE2b digest that finds an address without storing it in the clear."""

from __future__ import annotations

import hashlib

import nacl.utils

LOOKUP_KEY_BYTES = 32
BLIND_INDEX_BYTES = 16


def new_lookup_key() -> bytes:
    """A fresh per-tenant lookup key (32 random bytes), to be wrapped by the master key."""
    return nacl.utils.random(LOOKUP_KEY_BYTES)


def blind_index(lookup_key: bytes, normalised: str) -> bytes:
    """BLAKE2b-128 of the UTF-8 address keyed with the tenant's lookup key.

    `normalised` must already be canonical (E.164 "+905321112233", or a Telegram chat id):
    two spellings of one number only meet if the caller normalised them first.
    """
    if len(lookup_key) != LOOKUP_KEY_BYTES:
        raise ValueError("lookup key must be 32 bytes")
    # hashlib's BLAKE2b is the same function as libsodium's crypto_generichash (the interop
    # test checks it) at a tenth of the call overhead; imports index every row.
    return hashlib.blake2b(normalised.encode("utf-8"), digest_size=BLIND_INDEX_BYTES,
                           key=lookup_key).digest()
