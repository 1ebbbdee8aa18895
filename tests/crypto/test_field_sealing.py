"""Data keys and sealed fields: seal with a DEK, open with the tenant's cached DEKs."""

import nacl.bindings
import nacl.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import CorruptDataError, MissingDataKeyError
from crypto.fields import (
    FieldSealer,
    dek_id_of,
    new_data_key,
    open_field_with,
    seal_str,
)
from crypto.keys import public_key_of
from crypto.vault import UnlockedTenant, open_str

SECRET = bytes(range(1, 33))
PUBLIC = public_key_of(SECRET)
KEY = new_data_key(PUBLIC)
SEALER = FieldSealer(KEY.dek_id, KEY.dek)


def _reader() -> UnlockedTenant:
    tenant = UnlockedTenant(SECRET)
    tenant.add_sealed_deks({KEY.dek_id: KEY.sealed})
    return tenant


@given(plaintext=st.binary(max_size=512))
def test_sealed_field_round_trips(plaintext):
    assert open_field_with({KEY.dek_id: KEY.dek}, SEALER.seal_field(plaintext)) == plaintext


def test_turkish_text_round_trips_through_seal_str():
    blob = seal_str(SEALER, "Şükrü Çağlayan İğdır")
    assert open_str(_reader(), blob) == "Şükrü Çağlayan İğdır"


def test_field_blob_layout():
    blob = SEALER.seal_field(b"+905321112233")
    assert blob[0] == 1
    assert blob[1:17] == KEY.dek_id == dek_id_of(blob)
    assert len(blob) == 1 + 16 + 24 + 16 + len(b"+905321112233")
    # The tail is a standard libsodium secretbox (MAC || ciphertext) under the DEK.
    assert nacl.bindings.crypto_secretbox_open(blob[41:], blob[17:41], KEY.dek) == b"+905321112233"


@given(plaintext=st.binary(max_size=512), nonce=st.binary(min_size=24, max_size=24))
def test_sealing_is_the_libsodium_secretbox_byte_for_byte(plaintext, nonce):
    # The sealer calls libsodium directly (fast path); its output must be the binding's.
    from crypto.fields import _secretbox
    assert bytes(_secretbox(plaintext, nonce, KEY.dek)) == nacl.bindings.crypto_secretbox(
        plaintext, nonce, KEY.dek)


@given(plaintext=st.binary(max_size=512), nonce=st.binary(min_size=24, max_size=24),
       flip=st.integers(min_value=0))
def test_opening_is_the_libsodium_secretbox_open(plaintext, nonce, flip):
    # Opening calls libsodium directly too: it returns what the binding returns, and refuses
    # every box the binding refuses (any flipped bit, of the MAC or of the ciphertext).
    from crypto.fields import _secretbox_open
    boxed = nacl.bindings.crypto_secretbox(plaintext, nonce, KEY.dek)
    assert _secretbox_open(boxed, nonce, KEY.dek) == plaintext
    assert type(_secretbox_open(memoryview(boxed), nonce, KEY.dek)) is bytes
    tampered = bytearray(boxed)
    tampered[flip % len(boxed)] ^= 1 << (flip % 8)
    with pytest.raises(nacl.exceptions.CryptoError):
        _secretbox_open(bytes(tampered), nonce, KEY.dek)


@given(plaintexts=st.lists(st.binary(max_size=64), max_size=20))
def test_seal_many_seals_each_under_its_own_nonce(plaintexts):
    blobs = SEALER.seal_many(plaintexts)
    assert [open_field_with({KEY.dek_id: KEY.dek}, b) for b in blobs] == plaintexts
    assert len({b[17:41] for b in blobs}) == len(blobs)
    assert all(type(b) is bytes for b in blobs)


def test_same_plaintext_seals_differently_each_time():
    assert SEALER.seal_field(b"x") != SEALER.seal_field(b"x")


def test_data_key_is_sealed_to_the_tenant_public_key():
    assert len(KEY.dek_id) == 16
    assert len(KEY.sealed) == 80  # crypto_box_SEALBYTES (48) + 32-byte DEK
    assert nacl.bindings.crypto_box_seal_open(KEY.sealed, PUBLIC, SECRET) == KEY.dek


def test_new_data_key_repr_hides_the_dek():
    assert KEY.dek.hex() not in repr(KEY)
    assert "dek=" not in repr(KEY)
    assert KEY.dek.hex() not in repr(SEALER)


@given(position=st.integers(min_value=17, max_value=40 + 16 + 5), bit=st.integers(0, 7))
def test_tampered_field_raises_corrupt_data_error(position, bit):
    blob = bytearray(SEALER.seal_field(b"hello"))
    blob[position] ^= 1 << bit
    with pytest.raises(CorruptDataError):
        _reader().open_field(bytes(blob))


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01" + b"\x00" * 55, b"\x02" + b"\x00" * 80])
def test_short_or_unknown_version_blob_raises_corrupt_data_error(blob):
    with pytest.raises(CorruptDataError):
        dek_id_of(blob)
    with pytest.raises(CorruptDataError):
        _reader().open_field(blob)


def test_changed_dek_id_is_missing_not_silently_opened():
    blob = bytearray(SEALER.seal_field(b"hello"))
    blob[1] ^= 1
    with pytest.raises(MissingDataKeyError):
        _reader().open_field(bytes(blob))


def test_field_under_an_unloaded_dek_raises_missing_data_key_error():
    other = new_data_key(PUBLIC)
    blob = FieldSealer(other.dek_id, other.dek).seal_field(b"x")
    with pytest.raises(MissingDataKeyError):
        _reader().open_field(blob)


def test_field_sealer_rejects_wrong_key_sizes():
    with pytest.raises(ValueError):
        FieldSealer(b"short", KEY.dek)
    with pytest.raises(ValueError):
        FieldSealer(KEY.dek_id, b"short")
