"""The audit log's signing key: derived from the operator master key, never stored, so a
checkpoint can be checked against a public key that does not come from the database. Its public
half is printed and written beside the master key (`audit.pub`) for auditors to keep."""
from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import pathlib
import string

from crypto.master import MasterKey
from crypto.signing import sign, verify, verify_key_of

log = logging.getLogger(__name__)

PUBLIC_KEY_BYTES = 32
# Changing this string changes the key: every checkpoint signed so far would read as forged.
_CONTEXT = "izinli audit checkpoint signing key v1"
_HEX_DIGITS = frozenset(string.hexdigits)


class AuditKey:
    """Signs checkpoints; `public` is what verifies them."""

    __slots__ = ("_seed", "public")

    def __init__(self, master: MasterKey) -> None:
        self._seed = master.derive(_CONTEXT)
        self.public = verify_key_of(self._seed)

    def __repr__(self) -> str:
        return f"AuditKey(public={format_public_key(self.public)})"

    def sign(self, message: bytes) -> bytes:
        return sign(self._seed, message)


def signed_by(public_key: bytes, message: bytes, signature: bytes) -> bool:
    return verify(public_key, message, signature)


def format_public_key(key: bytes) -> str:
    return key.hex()


def fingerprint(key: bytes) -> str:
    """Short enough for a one-line message, long enough to tell keys apart by eye."""
    return key.hex()[:16]


def parse_public_key(text: str) -> bytes:
    """32 bytes written as 64 hex characters or as base64; ValueError otherwise."""
    text = text.strip()
    if len(text) == 2 * PUBLIC_KEY_BYTES and set(text) <= _HEX_DIGITS:
        return bytes.fromhex(text)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != PUBLIC_KEY_BYTES:
        raise ValueError("an audit public key is 32 bytes written as 64 hex characters or base64")
    return key


def read_public_key(value: str) -> bytes:
    """The key from a file holding it (such as `audit.pub`), or written out in `value`."""
    path = pathlib.Path(value)
    if path.is_file():
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            raise ValueError(f"cannot read the audit public key file {path}") from None
        try:
            return parse_public_key(text)
        except ValueError:
            raise ValueError(f"{path} does not hold an audit public key") from None
    return parse_public_key(value)


def publish_public_key(path: pathlib.Path, key: bytes) -> None:
    """Writes `path` (0644: it is public) unless it exists. An existing file that names another
    key is left alone and warned about: overwriting it would hide that someone changed it."""
    text = format_public_key(key) + "\n"
    try:
        found = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        _write_public_file(path, text)
        log.info("wrote the audit public key", extra={"path": str(path)})
        return
    if found.strip() != text.strip():
        log.warning("audit public key file does not match the master key's audit key",
                    extra={"path": str(path)})


def _write_public_file(path: pathlib.Path, text: str) -> None:
    # Written aside and renamed into place: a reader never sees half a key.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # the umask may have narrowed it; auditors must be able to read it
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
