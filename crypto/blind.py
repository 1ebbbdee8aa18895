"""Blind index: a keyed BLAKE2b digest that finds an address without storing it in the clear."""

from __future__ import annotations

import hashlib

import nacl.bindings
import nacl.exceptions
import nacl.utils

from crypto.errors import CorruptDataError

LOOKUP_KEY_BYTES = 32
BLIND_INDEX_BYTES = 16


def new_lookup_key() -> bytes:
    """A fresh per-tenant lookup key (32 random bytes), sealed to the tenant (`seal_lookup_key`)
    and, under `service` custody only, also wrapped by the master key."""
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


def seal_lookup_key(lookup_key: bytes, tenant_public_key: bytes) -> bytes:
    """The lookup key as the tenant holds it: crypto_box_seal to the tenant's X25519 public key
    (80 bytes; docs/crypto.md). Only the tenant secret key opens it, so only while unlocked."""
    if len(lookup_key) != LOOKUP_KEY_BYTES:
        raise ValueError("lookup key must be 32 bytes")
    return nacl.bindings.crypto_box_seal(lookup_key, tenant_public_key)


def open_lookup_key(sealed: bytes, public_key: bytes, secret_key: bytes) -> bytes:
    """The 32-byte lookup key inside `seal_lookup_key`'s blob."""
    try:
        key = nacl.bindings.crypto_box_seal_open(sealed, public_key, secret_key)
    except (nacl.exceptions.CryptoError, TypeError):
        raise CorruptDataError("sealed lookup key does not open with this tenant's key") from None
    if len(key) != LOOKUP_KEY_BYTES:
        raise CorruptDataError("sealed lookup key has the wrong length")
    return key


def provider_reference(provider_id: str) -> str:
    """What we store of a provider's message id: its BLAKE2b-128 digest, hex, prefixed "b2:".

    A WhatsApp message id ("wamid.…") is base64 that embeds the recipient's phone number, so
    keeping it readable would hand the number to whoever reads the database. Its digest still
    finds a duplicate delivery (the provider resends the same id) and cannot be turned back
    into the number: the id also carries the provider's random part."""
    digest = hashlib.blake2b(provider_id.encode("utf-8", "surrogatepass"), digest_size=16)
    return "b2:" + digest.hexdigest()
