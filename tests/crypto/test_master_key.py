"""Operator master key: IZINLI_MASTER_KEY forms, the 0600 key file, and wrapped blobs."""

import base64
import os
import stat
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import CorruptDataError
from crypto.master import (
    MasterKey,
    generate_master_key_text,
    load_master_key,
    parse_master_key_text,
)

RAW = bytes(range(100, 132))


def test_key_file_is_created_0600_on_first_start(tmp_path):
    path = tmp_path / "var" / "master.key"
    key = load_master_key(None, path)
    assert key.created
    assert not key.loose_permissions
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text().strip())) == 32


def test_key_file_is_reused_on_second_start(tmp_path):
    path = tmp_path / "master.key"
    blob = load_master_key(None, path).wrap(b"line token")
    again = load_master_key(None, path)
    assert not again.created
    assert again.unwrap(blob) == b"line token"


def test_loose_key_file_permissions_load_but_are_flagged(tmp_path):
    path = tmp_path / "master.key"
    path.write_text(base64.b64encode(RAW).decode())
    os.chmod(path, 0o644)
    key = load_master_key(None, path)
    assert key.loose_permissions
    assert key.unwrap(MasterKey(RAW).wrap(b"x")) == b"x"


def test_concurrent_first_starts_agree_on_one_key(tmp_path):
    path = tmp_path / "master.key"
    barrier = threading.Barrier(8)
    keys: list[MasterKey] = []

    def start():
        barrier.wait()
        keys.append(load_master_key(None, path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    blob = keys[0].wrap(b"same")
    assert all(k.unwrap(blob) == b"same" for k in keys)
    assert sum(k.created for k in keys) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]  # no temp files left


def test_env_value_wins_over_the_file_and_creates_nothing(tmp_path):
    path = tmp_path / "master.key"
    key = load_master_key(base64.b64encode(RAW).decode(), path)
    assert key.source == "env"
    assert not path.exists()


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(RAW).decode(),
        base64.urlsafe_b64encode(RAW).decode(),
        base64.urlsafe_b64encode(RAW).decode().rstrip("="),
        RAW.hex(),
        RAW.hex().upper(),
        "  " + RAW.hex() + "\n",
    ],
    ids=["base64", "urlsafe", "unpadded", "hex", "HEX", "whitespace"],
)
def test_izinli_master_key_forms_are_accepted(tmp_path, text):
    assert load_master_key(text, tmp_path / "k").unwrap(MasterKey(RAW).wrap(b"ok")) == b"ok"


@pytest.mark.parametrize(
    "text",
    [
        "hunter2",
        base64.b64encode(RAW[:31]).decode(),
        base64.b64encode(RAW + b"\x00").decode(),
        RAW.hex()[:-1],
        RAW.hex()[:-1] + "g",
        "a" * 44,
    ],
    ids=["word", "31-bytes", "33-bytes", "63-hex", "bad-hex", "44-chars"],
)
def test_bad_izinli_master_key_is_rejected_without_echoing_it(tmp_path, text):
    with pytest.raises(ValueError) as info:
        load_master_key(text, tmp_path / "k")
    message = str(info.value)
    assert "IZINLI_MASTER_KEY" in message
    assert "\n" not in message
    assert text.strip() not in message


def test_garbled_key_file_is_a_value_error(tmp_path):
    path = tmp_path / "master.key"
    path.write_text("not a key")
    with pytest.raises(ValueError, match="master key file"):
        load_master_key(None, path)


@given(raw=st.binary(min_size=32, max_size=32))
def test_generated_and_encoded_keys_parse_back(raw):
    assert parse_master_key_text(base64.b64encode(raw).decode()) == raw
    assert parse_master_key_text(base64.urlsafe_b64encode(raw).decode()) == raw
    assert parse_master_key_text(raw.hex()) == raw


def test_generate_master_key_text_is_32_random_bytes():
    text = generate_master_key_text()
    assert len(base64.b64decode(text, validate=True)) == 32
    assert text != generate_master_key_text()


def test_repr_never_shows_the_key():
    key = MasterKey(RAW)
    for form in (RAW.hex(), base64.b64encode(RAW).decode(), repr(RAW)):
        assert form not in repr(key)
        assert form not in str(key)


@given(plaintext=st.binary(max_size=256))
def test_master_wrap_round_trips(plaintext):
    key = MasterKey(RAW)
    blob = key.wrap(plaintext)
    assert blob[0] == 1 and len(blob) == 1 + 24 + 16 + len(plaintext)
    assert key.unwrap(blob) == plaintext


@pytest.mark.parametrize("position", [0, 1, 24, 25, 40, 41])
def test_tampered_master_blob_raises_corrupt_data_error(position):
    blob = bytearray(MasterKey(RAW).wrap(b"webhook secret"))
    blob[position] ^= 0x01
    with pytest.raises(CorruptDataError):
        MasterKey(RAW).unwrap(bytes(blob))


def test_blob_from_another_master_key_raises_corrupt_data_error():
    blob = MasterKey(RAW).wrap(b"x")
    with pytest.raises(CorruptDataError):
        MasterKey(bytes(32)).unwrap(blob)
    with pytest.raises(CorruptDataError):
        MasterKey(RAW).unwrap(blob[:40])
