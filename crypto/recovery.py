"""Recovery codes: a second wrap of the tenant secret key, under a random code the owner prints
once and keeps apart (a forgotten passphrase then loses nothing).

A code is 24 characters of RFC 4648 base32 (A–Z, 2–7: 120 random bits), shown in six groups
of four. The wrap is the passphrase wrap's format (crypto.keys, "IZTK"), keyed by the code
in its canonical form (upper case, no separators); 120 random bits need no slow hash to resist
guessing, the Argon2id cost is kept only so one format and one opener serve both wraps."""
from __future__ import annotations

import base64
import secrets

from crypto.errors import WrongPassphraseError
from crypto.keys import unwrap_secret, wrap_secret

CODE_CHARS = 24
GROUP = 4
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
# What people misread or mistype when copying a code by hand.
_LOOKALIKES = str.maketrans({"0": "O", "1": "I", "8": "B"})


class WrongRecoveryCodeError(WrongPassphraseError):
    """The recovery code is malformed or does not open the recovery wrap."""

    code = "wrong_recovery_code"


def new_code() -> str:
    """A fresh code as it is shown: ABCD-EFGH-…, six groups of four."""
    raw = base64.b32encode(secrets.token_bytes(15)).decode("ascii")  # 15 bytes: 24 chars
    return "-".join(raw[i:i + GROUP] for i in range(0, CODE_CHARS, GROUP))


def canonical(typed: str) -> str:
    """The code without spaces or dashes, upper case; WrongRecoveryCodeError when it cannot
    be one (the message never repeats what was typed)."""
    text = "".join(c for c in typed.upper() if c not in " -\t\r\n").translate(_LOOKALIKES)
    if len(text) != CODE_CHARS or not set(text) <= _ALPHABET:
        raise WrongRecoveryCodeError(
            f"a recovery code is {CODE_CHARS} letters and digits (2-7), as printed")
    return text


def wrap_with_code(secret_key: bytes, code: str, kdf: str = "moderate") -> bytes:
    return wrap_secret(secret_key, canonical(code), kdf)


def unwrap_with_code(wrapped: bytes, code: str) -> bytes:
    """The secret key inside a recovery wrap; WrongRecoveryCodeError for a wrong code."""
    try:
        return unwrap_secret(wrapped, canonical(code))
    except WrongRecoveryCodeError:
        raise
    except WrongPassphraseError:
        raise WrongRecoveryCodeError("wrong recovery code") from None
