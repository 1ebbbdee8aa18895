"""Ed25519 signatures for the audit log's checkpoints (the seed: crypto.audit_key)."""
from __future__ import annotations

import nacl.exceptions
import nacl.signing


def verify_key_of(seed: bytes) -> bytes:
    return bytes(nacl.signing.SigningKey(seed).verify_key)


def sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte detached signature."""
    return nacl.signing.SigningKey(seed).sign(message).signature


def verify(verify_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(verify_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True
