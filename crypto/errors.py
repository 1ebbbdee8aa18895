"""The closed set of errors the crypto package raises; messages never carry secrets."""


class CryptoError(Exception):
    """Base of every error raised by `crypto`; `code` is stable for the API layer."""

    code = "crypto_error"


class WrongPassphraseError(CryptoError):
    """The passphrase does not open the tenant's wrapped secret key."""

    code = "wrong_passphrase"


class VaultLockedError(CryptoError):
    """The tenant's secret key is not unlocked in this process (never was, locked, or expired)."""

    code = "vault_locked"


class CorruptDataError(CryptoError):
    """A blob is malformed, forged, tampered with, or has an unknown format version."""

    code = "corrupt_data"


class MissingDataKeyError(CryptoError):
    """A sealed field refers to a data key (DEK) that has not been loaded into the vault."""

    code = "missing_data_key"
