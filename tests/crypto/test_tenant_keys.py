"""Tenant key pair: the passphrase-wrapped secret key blob."""

import struct
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import CorruptDataError, WrongPassphraseError
from crypto.keys import (
    KDF_LEVELS,
    WRAPPED_LENGTH,
    kdf_params_of,
    new_tenant_keys,
    public_key_of,
    unwrap_secret,
    wrap_secret,
)

PASSPHRASE = "Şükrü Çağlayan İğdır 1923!"
# kdf "min" keeps the suite fast; the layout and code path are the same at every level.
KEYS = new_tenant_keys(PASSPHRASE, kdf="min")


@pytest.fixture
def keys():
    return KEYS


def test_unwrap_returns_the_secret_of_the_public_key(keys):
    secret = unwrap_secret(keys.wrapped_secret, PASSPHRASE)
    assert len(secret) == 32
    assert public_key_of(secret) == keys.public_key


def test_wrapped_secret_layout_is_self_describing(keys):
    blob = keys.wrapped_secret
    assert len(blob) == WRAPPED_LENGTH == 105
    magic, version, ops, mem = struct.unpack_from(">4sBIQ", blob)
    assert (magic, version) == (b"IZTK", 1)
    assert (ops, mem) == KDF_LEVELS["min"] == kdf_params_of(blob)


def test_wrong_passphrase_raises_wrong_passphrase_error(keys):
    with pytest.raises(WrongPassphraseError):
        unwrap_secret(keys.wrapped_secret, PASSPHRASE + " ")


def test_passphrase_is_nfc_normalised(keys):
    decomposed = unicodedata.normalize("NFD", PASSPHRASE)
    assert decomposed != PASSPHRASE
    assert public_key_of(unwrap_secret(keys.wrapped_secret, decomposed)) == keys.public_key


def test_turkish_dotted_and_dotless_i_are_different_passphrases(keys):
    with pytest.raises(WrongPassphraseError):
        unwrap_secret(keys.wrapped_secret, PASSPHRASE.replace("İ", "I"))


def test_each_wrap_uses_a_fresh_salt_and_nonce(keys):
    secret = unwrap_secret(keys.wrapped_secret, PASSPHRASE)
    assert wrap_secret(secret, PASSPHRASE, "min") != wrap_secret(secret, PASSPHRASE, "min")


def test_rewrap_changes_the_passphrase(keys):
    secret = unwrap_secret(keys.wrapped_secret, PASSPHRASE)
    rewrapped = wrap_secret(secret, "yeni parola", "interactive")
    assert kdf_params_of(rewrapped) == KDF_LEVELS["interactive"]
    assert unwrap_secret(rewrapped, "yeni parola") == secret


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:-1],
        lambda b: b + b"\x00",
        lambda b: b"",
        lambda b: b"XXXX" + b[4:],
        lambda b: b[:4] + b"\x02" + b[5:],
        lambda b: b[:5] + struct.pack(">I", 0) + b[9:],
        lambda b: b[:9] + struct.pack(">Q", 2**60) + b[17:],
    ],
    ids=["short", "long", "empty", "magic", "version", "opslimit", "memlimit"],
)
def test_malformed_wrapped_secret_raises_corrupt_data_error(keys, mangle):
    with pytest.raises(CorruptDataError):
        unwrap_secret(mangle(keys.wrapped_secret), PASSPHRASE)


@settings(max_examples=30, deadline=None)
@given(position=st.integers(min_value=17, max_value=WRAPPED_LENGTH - 1), bit=st.integers(0, 7))
def test_tampered_salt_nonce_or_body_never_opens(position, bit):
    blob = bytearray(KEYS.wrapped_secret)
    blob[position] ^= 1 << bit
    # A MAC failure cannot tell tampering from a wrong passphrase.
    with pytest.raises(WrongPassphraseError):
        unwrap_secret(bytes(blob), PASSPHRASE)


def test_unknown_kdf_level_is_rejected():
    with pytest.raises(ValueError, match="kdf"):
        new_tenant_keys(PASSPHRASE, kdf="weak")


def test_kdf_levels_are_libsodium_constants():
    assert KDF_LEVELS["moderate"] == (3, 256 * 1024 * 1024)
    assert KDF_LEVELS["interactive"] == (2, 64 * 1024 * 1024)
    assert KDF_LEVELS["min"] == (1, 8192)
