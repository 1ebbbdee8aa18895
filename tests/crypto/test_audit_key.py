"""The audit signing key: derived from the master key (nothing stored), its public half
readable by auditors in hex or base64, and the file beside the master key left as found."""
import base64
import logging
import os
import stat

import pytest

from crypto.audit_key import (
    AuditKey,
    parse_public_key,
    publish_public_key,
    read_public_key,
    signed_by,
)
from crypto.master import MasterKey


def test_audit_key_is_derived_from_the_master_key_alone():
    raw = os.urandom(32)
    one, again, other = AuditKey(MasterKey(raw)), AuditKey(MasterKey(raw)), \
        AuditKey(MasterKey(os.urandom(32)))
    assert one.public == again.public != other.public and len(one.public) == 32
    signature = one.sign(b"checkpoint")
    assert signed_by(again.public, b"checkpoint", signature)
    assert not signed_by(other.public, b"checkpoint", signature)
    assert not signed_by(one.public, b"checkpoint!", signature)
    assert raw.hex() not in repr(one) and one.public.hex() in repr(one)


def test_public_key_is_read_from_hex_base64_or_a_file(tmp_path):
    key = AuditKey(MasterKey(os.urandom(32))).public
    assert parse_public_key(key.hex().upper()) == key
    assert parse_public_key(base64.b64encode(key).decode()) == key
    assert parse_public_key(base64.b64encode(key).decode().rstrip("=")) == key
    (tmp_path / "audit.pub").write_text(key.hex() + "\n")
    assert read_public_key(str(tmp_path / "audit.pub")) == key
    for bad in ("", "abc", key.hex()[:-2], "z" * 64):
        with pytest.raises(ValueError):
            parse_public_key(bad)
    (tmp_path / "bad.pub").write_text("hello\n")
    with pytest.raises(ValueError, match="does not hold an audit public key"):
        read_public_key(str(tmp_path / "bad.pub"))


def test_published_key_file_is_world_readable_and_never_overwritten(tmp_path, caplog):
    path = tmp_path / "audit.pub"
    key, other = (AuditKey(MasterKey(os.urandom(32))).public for _ in range(2))
    old = os.umask(0o077)
    try:
        publish_public_key(path, key)
    finally:
        os.umask(old)
    assert path.read_text() == key.hex() + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with caplog.at_level(logging.WARNING):
        publish_public_key(path, other)  # someone changed it, or the master key changed
    assert path.read_text() == key.hex() + "\n"
    assert "does not match" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["audit.pub"]
