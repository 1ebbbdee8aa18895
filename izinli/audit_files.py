"""The audit log's files in the data dir: `audit.pub` (the public key auditors verify
checkpoints with) and `audit.checkpoints` (every checkpoint this process signed, one line each,
so cutting the log and its checkpoints out of the database is still found). Neither holds a
secret, so they stay in the data dir wherever the master key is kept."""
from __future__ import annotations

import logging
from pathlib import Path

from crypto.audit_key import AuditKey, publish_public_key
from crypto.master import MasterKey
from izinli.config import Config

log = logging.getLogger(__name__)


def public_key_path(config: Config) -> Path:
    return config.data_dir / "audit.pub"


def journal_path(config: Config) -> Path:
    return config.data_dir / "audit.checkpoints"


def publish(config: Config, master: MasterKey) -> None:
    """Writes `audit.pub` when it is missing (call it after the store is open, which makes the
    data dir with its modes). Where the data dir does not outlive a container, `izinli audit
    public-key` prints the same key from the master key."""
    try:
        publish_public_key(public_key_path(config), AuditKey(master).public)
    except OSError as exc:
        log.warning("could not write the audit public key file",
                    extra={"path": str(public_key_path(config)), "error": type(exc).__name__})
