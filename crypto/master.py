"""Operator master key: loading or creating it, and wrapping small secrets under it."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import pathlib
import string

import nacl.bindings
import nacl.exceptions
import nacl.utils

from crypto.errors import CorruptDataError

log = logging.getLogger(__name__)

KEY_BYTES = nacl.bindings.crypto_secretbox_KEYBYTES
# Master-wrapped blob, version 1:  0x01 | nonce 24 | MAC 16 + plaintext
MASTER_BLOB_VERSION = 1
_NONCE_BYTES = nacl.bindings.crypto_secretbox_NONCEBYTES
_MIN_BLOB = 1 + _NONCE_BYTES + nacl.bindings.crypto_secretbox_MACBYTES
_HEX_DIGITS = frozenset(string.hexdigits)


class MasterKey:
    """The operator's SecretBox key; wraps lookup keys, line credentials, webhook secrets."""

    __slots__ = ("_key", "created", "loose_permissions", "source")

    def __init__(
        self,
        key: bytes,
        *,
        source: str = "memory",
        loose_permissions: bool = False,
        created: bool = False,
    ) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("master key must be 32 bytes")
        self._key = bytes(key)
        self.source = source  # "env", or the file path, so the caller can say where it came from
        self.loose_permissions = loose_permissions  # key file readable by group/other: warn
        self.created = created  # the key file was created by this call

    def __repr__(self) -> str:
        return f"MasterKey(source={self.source!r}, key=<hidden>)"

    def wrap(self, plaintext: bytes) -> bytes:
        """Encrypt and authenticate `plaintext` under the master key."""
        nonce = nacl.utils.random(_NONCE_BYTES)
        boxed = nacl.bindings.crypto_secretbox(plaintext, nonce, self._key)
        return bytes((MASTER_BLOB_VERSION,)) + nonce + boxed

    def derive(self, context: str, size: int = 32) -> bytes:
        """A subkey for one purpose (BLAKE2b keyed with the master key over `context`)."""
        return hashlib.blake2b(context.encode(), key=self._key, digest_size=size).digest()

    def unwrap(self, blob: bytes) -> bytes:
        """Open a blob made by `wrap`; CorruptDataError when it is forged, damaged or foreign."""
        if len(blob) < _MIN_BLOB:
            raise CorruptDataError("master-wrapped blob is too short")
        if blob[0] != MASTER_BLOB_VERSION:
            raise CorruptDataError(f"unknown master-wrapped blob version {blob[0]}")
        try:
            return nacl.bindings.crypto_secretbox_open(
                blob[1 + _NONCE_BYTES :], blob[1 : 1 + _NONCE_BYTES], self._key
            )
        except nacl.exceptions.CryptoError:
            raise CorruptDataError("master-wrapped blob does not open with this key") from None


def generate_master_key_text() -> str:
    """Base64 of 32 random bytes: a value for IZINLI_MASTER_KEY or the key file."""
    return base64.b64encode(nacl.utils.random(KEY_BYTES)).decode("ascii")


def load_master_key(env_value: str | None, path: pathlib.Path) -> MasterKey:
    """The key from IZINLI_MASTER_KEY when set, else from `path`, created on first start.

    Raises ValueError with a one-line message (never echoing the value) on a bad key.
    """
    if env_value is not None and env_value.strip():
        return MasterKey(parse_master_key_text(env_value, "IZINLI_MASTER_KEY"), source="env")
    created = _create_key_file(path)
    key_text = path.read_text(encoding="ascii", errors="replace")
    key = parse_master_key_text(key_text, f"master key file {path}")
    loose = path.stat().st_mode & 0o077 != 0
    return MasterKey(key, source=str(path), loose_permissions=loose, created=created)


def parse_master_key_text(text: str, where: str = "master key") -> bytes:
    """32 bytes from base64 (standard or urlsafe, padding optional) or 64 hex characters."""
    text = text.strip()
    if len(text) == 2 * KEY_BYTES and set(text) <= _HEX_DIGITS:
        return bytes.fromhex(text)
    key = _decode_base64(text)
    if key is None or len(key) != KEY_BYTES:
        raise ValueError(f"{where} must be 32 bytes written as base64 or as 64 hex characters")
    return key


def _decode_base64(text: str) -> bytes | None:
    standard = text.replace("-", "+").replace("_", "/")
    standard += "=" * (-len(standard) % 4)
    try:
        return base64.b64decode(standard, validate=True)
    except (binascii.Error, ValueError):
        return None


def _create_key_file(path: pathlib.Path) -> bool:
    """Create `path` holding a fresh key unless it exists; True when this call created it.

    The key is written to a private temporary file and hard-linked into place, so the file
    appears complete or not at all: two first starts racing agree on one key, and a reader
    never sees a half-written file (a bare O_EXCL create would expose an empty one).
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{nacl.utils.random(6).hex()}.tmp")
    _write_new_file(tmp, generate_master_key_text() + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False  # another process won the race; its key is the key
    except OSError:
        # A filesystem without hard links: plain O_EXCL still gives one winner.
        return _create_in_place(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    log.info("created master key file %s", path)
    return True


def _create_in_place(path: pathlib.Path) -> bool:
    try:
        _write_new_file(path, generate_master_key_text() + "\n")
    except FileExistsError:
        return False
    log.info("created master key file %s", path)
    return True


def _write_new_file(path: pathlib.Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(directory: pathlib.Path) -> None:
    # Without this a crash right after first start could lose the directory entry, and the
    # next start would make a second key that cannot open what the first one wrapped.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
