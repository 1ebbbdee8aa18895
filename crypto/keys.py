"""Tenant key pair (X25519) and its passphrase-wrapped secret key blob."""

from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.utils
from nacl.pwhash import argon2id

from crypto.errors import CorruptDataError, WrongPassphraseError

KDF_LEVELS: dict[str, tuple[int, int]] = {
    "moderate": (argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE),
    "interactive": (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE),
    "min": (argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN),
}

# Wrapped secret, version 1 (105 bytes; docs/crypto.md has the table):
#   "IZTK" | 0x01 | opslimit u32 BE | memlimit u64 BE | salt 16 | nonce 24 | MAC 16 + secret 32
WRAPPED_MAGIC = b"IZTK"
WRAPPED_VERSION = 1
_HEADER = struct.Struct(">4sBIQ16s")
_NONCE_BYTES = nacl.bindings.crypto_secretbox_NONCEBYTES
_SECRET_BYTES = nacl.bindings.crypto_box_SECRETKEYBYTES
_BOX_BYTES = nacl.bindings.crypto_secretbox_MACBYTES + _SECRET_BYTES
WRAPPED_LENGTH = _HEADER.size + _NONCE_BYTES + _BOX_BYTES

# A forged header must not make us allocate terabytes; 4 GiB is far above any level we use.
_MAX_MEMLIMIT = 4 * 1024**3


@dataclass(frozen=True)
class TenantKeys:
    """A fresh tenant key pair as it is stored: the public key and the wrapped secret."""

    public_key: bytes
    wrapped_secret: bytes


def new_tenant_keys(passphrase: str, kdf: str = "moderate") -> TenantKeys:
    """Make a random X25519 key pair and wrap its secret key under `passphrase`.

    Argon2id at "moderate" takes about a second and 256 MiB; call it off the event loop.
    """
    public_key, secret_key = nacl.bindings.crypto_box_keypair()
    return TenantKeys(public_key, wrap_secret(secret_key, passphrase, kdf))


def wrap_secret(secret_key: bytes, passphrase: str, kdf: str = "moderate") -> bytes:
    """Wrap a 32-byte secret key under `passphrase` (also used to change the passphrase)."""
    if len(secret_key) != _SECRET_BYTES:
        raise ValueError("secret key must be 32 bytes")
    opslimit, memlimit = _kdf_level(kdf)
    salt = nacl.utils.random(argon2id.SALTBYTES)
    box_key = _derive(passphrase, salt, opslimit, memlimit)
    nonce = nacl.utils.random(_NONCE_BYTES)
    boxed = nacl.bindings.crypto_secretbox(secret_key, nonce, box_key)
    header = _HEADER.pack(WRAPPED_MAGIC, WRAPPED_VERSION, opslimit, memlimit, salt)
    return header + nonce + boxed


def unwrap_secret(wrapped: bytes, passphrase: str) -> bytes:
    """Return the 32-byte secret key inside `wrapped`, using the KDF cost stored in the blob.

    A MAC failure cannot tell a wrong passphrase from a tampered body or header, so both
    raise WrongPassphraseError; only a structurally malformed blob is CorruptDataError.
    """
    opslimit, memlimit, salt = _parse_header(wrapped)
    box_key = _derive(passphrase, salt, opslimit, memlimit)
    nonce = wrapped[_HEADER.size : _HEADER.size + _NONCE_BYTES]
    try:
        secret_key = nacl.bindings.crypto_secretbox_open(
            wrapped[_HEADER.size + _NONCE_BYTES :], nonce, box_key
        )
    except nacl.exceptions.CryptoError:
        raise WrongPassphraseError("wrong passphrase") from None
    return secret_key


def public_key_of(secret: bytes) -> bytes:
    """The X25519 public key that belongs to a 32-byte secret key."""
    if len(secret) != _SECRET_BYTES:
        raise ValueError("secret key must be 32 bytes")
    return nacl.bindings.crypto_scalarmult_base(secret)


def kdf_params_of(wrapped: bytes) -> tuple[int, int]:
    """(opslimit, memlimit) recorded in a wrapped secret, e.g. to re-wrap weak blobs."""
    opslimit, memlimit, _salt = _parse_header(wrapped)
    return opslimit, memlimit


def _parse_header(wrapped: bytes) -> tuple[int, int, bytes]:
    if len(wrapped) != WRAPPED_LENGTH:
        raise CorruptDataError("wrapped secret key has the wrong length")
    magic, version, opslimit, memlimit, salt = _HEADER.unpack_from(wrapped)
    if magic != WRAPPED_MAGIC:
        raise CorruptDataError("not a wrapped secret key")
    if version != WRAPPED_VERSION:
        raise CorruptDataError(f"unknown wrapped secret key version {version}")
    if not argon2id.OPSLIMIT_MIN <= opslimit <= argon2id.OPSLIMIT_MAX:
        raise CorruptDataError("wrapped secret key has an invalid opslimit")
    if not argon2id.MEMLIMIT_MIN <= memlimit <= _MAX_MEMLIMIT:
        raise CorruptDataError("wrapped secret key has an invalid memlimit")
    return opslimit, memlimit, salt


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    # NFC so that "İ" typed on a Turkish keyboard and the same letter pasted in decomposed
    # form (I + U+0307) unlock the same key.
    password = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return argon2id.kdf(nacl.bindings.crypto_secretbox_KEYBYTES, password, salt, opslimit, memlimit)


def _kdf_level(kdf: str) -> tuple[int, int]:
    try:
        return KDF_LEVELS[kdf]
    except KeyError:
        raise ValueError(f"unknown kdf level {kdf!r}; choose one of {sorted(KDF_LEVELS)}") from None
