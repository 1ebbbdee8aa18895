"""The audit log's files beside the master key: `audit.pub` (the public key auditors verify
checkpoints with) and `audit.checkpoints` (every checkpoint this process signed, one line each,
so cutting the log and its checkpoints out of the database is still found). Both are written
in the data dir even when the master key comes from IZINLI_MASTER_KEY: neither holds a secret,
and the data dir is where the server keeps its files either way."""
from __future__ import annotations

import logging
from pathlib import Path

from crypto.audit_key import AuditKey, publish_public_key
from crypto.master import MasterKey
from izinli.config import Config

log = logging.getLogger(__name__)


def public_key_path(config: Config) -> Path:
    return config.master_key_path.with_name("audit.pub")


def journal_path(config: Config) -> Path:
    return config.master_key_path.with_name("audit.checkpoints")


def publish(config: Config, master: MasterKey) -> None:
    """Writes `audit.pub` when it is missing (call it after the store is open, which makes the
    data dir with its modes). Where the data dir does not outlive a container, `izinli audit
    public-key` prints the same key from the master key."""
    try:
        publish_public_key(public_key_path(config), AuditKey(master).public)
    except OSError as exc:
        log.warning("could not write the audit public key file",
                    extra={"path": str(public_key_path(config)), "error": type(exc).__name__})
