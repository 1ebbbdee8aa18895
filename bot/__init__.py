"""Channels: sandbox, Telegram, WhatsApp; inbound routing; the operator bot."""
