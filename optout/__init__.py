"""Consent: ledger, suppression, the gate, keywords, İYS client and sync."""
