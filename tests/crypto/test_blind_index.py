"""Blind index: keyed BLAKE2b-128 over the normalised address."""

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from crypto.blind import blind_index, new_lookup_key

KEY = bytes(range(32))


def test_blind_index_is_deterministic_and_16_bytes():
    first = blind_index(KEY, "+905321112233")
    assert first == blind_index(KEY, "+905321112233")
    assert len(first) == 16


def test_blind_index_depends_on_the_lookup_key():
    assert blind_index(KEY, "+905321112233") != blind_index(new_lookup_key(), "+905321112233")


def test_blind_index_depends_on_the_address():
    assert blind_index(KEY, "+905321112233") != blind_index(KEY, "+905321112234")
    assert blind_index(KEY, "123456789") != blind_index(KEY, "-123456789")


def test_lookup_keys_are_random_32_bytes():
    assert len(new_lookup_key()) == 32
    assert new_lookup_key() != new_lookup_key()


@given(address=st.text(max_size=64), key=st.binary(min_size=32, max_size=32))
def test_blind_index_is_standard_keyed_blake2b(address, key):
    # Any BLAKE2b implementation (hashlib here, crypto_generichash in libsodium) agrees.
    expected = hashlib.blake2b(address.encode(), key=key, digest_size=16).digest()
    assert blind_index(key, address) == expected
