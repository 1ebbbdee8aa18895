"""Vault shares: an unlocked tenant secret key sealed to ONE server process's ephemeral X25519
key, so that one unlock serves every process of a cluster (docs/crypto.md has the layout).

Each process makes its key pair at start and keeps the secret half in memory only; a share
opens in that process alone, and the plaintext names the tenant, the process and the unlock
epoch it was made for, so a share copied to another row is refused."""
from __future__ import annotations

import hashlib
import hmac
import math
import struct
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions

from crypto.errors import CorruptDataError
from crypto.keys import public_key_of
from crypto.master import MasterKey

# Stored share, version 1:  0x01 | crypto_box_seal(plaintext, process public key)
# Plaintext:  secret 32 | epoch u64 BE | expires_at f64 BE | n u8 | tenant id n |
#             m u8 | process id m   (ids in UTF-8)
SHARE_VERSION = 1
_SECRET_BYTES = nacl.bindings.crypto_box_SECRETKEYBYTES
_HEAD = struct.Struct(">32sQd")
_SEAL_BYTES = nacl.bindings.crypto_box_SEALBYTES  # ephemeral public key 32 + MAC 16
MAX_ID_BYTES = 255
_PROOF_CONTEXT = "izinli cluster process v1"


@dataclass(frozen=True, repr=False)
class Share:
    """What a share carries: the tenant secret key, the unlock epoch it belongs to, and when
    that unlock ends (UNIX seconds by the DATABASE's clock, the one clock all processes share)."""

    secret_key: bytes
    epoch: int
    expires_at: float

    def __repr__(self) -> str:
        return f"Share(epoch={self.epoch}, expires_at={self.expires_at}, secret_key=<hidden>)"


class ProcessKeys:
    """This process's ephemeral X25519 key pair. Made at start, never stored: a restarted
    process has a new one, so shares sealed to its predecessor are useless to anyone."""

    __slots__ = ("_secret_key", "public_key")

    def __init__(self) -> None:
        self.public_key, self._secret_key = nacl.bindings.crypto_box_keypair()

    def __repr__(self) -> str:
        return f"ProcessKeys(public_key={self.public_key.hex()})"

    def open_share(self, blob: bytes, tenant_id: str, process_id: str) -> Share:
        """The share inside `blob`; CorruptDataError unless it was sealed to this process's
        key for exactly this tenant and process id."""
        if len(blob) < 1 + _SEAL_BYTES + _HEAD.size + 2 or blob[0] != SHARE_VERSION:
            raise CorruptDataError("not a vault share of a known version")
        try:
            plain = nacl.bindings.crypto_box_seal_open(blob[1:], self.public_key,
                                                       self._secret_key)
        except (nacl.exceptions.CryptoError, TypeError):
            raise CorruptDataError("vault share does not open with this process's key") from None
        secret, epoch, expires_at = _HEAD.unpack_from(plain)
        ids = _read_ids(plain[_HEAD.size:])
        if ids != (tenant_id, process_id):
            raise CorruptDataError("vault share was made for another tenant or process")
        return Share(secret, epoch, expires_at)


def process_proof(master: MasterKey, process_id: str, public_key: bytes) -> bytes:
    """What a process registers beside its public key: BLAKE2b-256 of `process_id || 0x00 ||
    public_key` keyed with a subkey of the master key. Shares are sealed only to processes
    whose proof checks, so a row written by someone without the master key never gets one."""
    key = master.derive(_PROOF_CONTEXT)
    return hashlib.blake2b(process_id.encode("utf-8") + b"\0" + public_key, key=key,
                           digest_size=32).digest()


def proof_holds(master: MasterKey, process_id: str, public_key: bytes, proof: bytes) -> bool:
    return hmac.compare_digest(process_proof(master, process_id, public_key), proof)


def seal_share(process_public_key: bytes, tenant_id: str, process_id: str,
               share: Share) -> bytes:
    """`share` sealed (crypto_box_seal) to one process's public key, bound to the ids."""
    if len(share.secret_key) != _SECRET_BYTES:
        raise ValueError("secret key must be 32 bytes")
    if not (0 <= share.epoch < 2**64 and math.isfinite(share.expires_at)):
        raise ValueError("epoch must fit in 64 bits and expires_at must be finite")
    plain = _HEAD.pack(share.secret_key, share.epoch, share.expires_at)
    for text in (tenant_id, process_id):
        raw = text.encode("utf-8")
        if not 0 < len(raw) <= MAX_ID_BYTES:
            raise ValueError("ids must be 1 to 255 bytes of UTF-8")
        plain += bytes((len(raw),)) + raw
    return bytes((SHARE_VERSION,)) + nacl.bindings.crypto_box_seal(plain, process_public_key)


def holds_key_of(share: Share, tenant_public_key: bytes) -> bool:
    """True when the share's secret key belongs to the tenant's stored public key."""
    return public_key_of(share.secret_key) == tenant_public_key


def _read_ids(rest: bytes) -> tuple[str, str]:
    try:
        n = rest[0]
        tenant_id = rest[1:1 + n].decode("utf-8")
        m = rest[1 + n]
        process_id = rest[2 + n:2 + n + m].decode("utf-8")
    except (IndexError, UnicodeDecodeError):
        raise CorruptDataError("vault share ids are malformed") from None
    if len(rest) != 2 + n + m:
        raise CorruptDataError("vault share has trailing bytes")
    return tenant_id, process_id
