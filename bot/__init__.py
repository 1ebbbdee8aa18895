"""Channels: the Channel implementations (sandbox, Telegram, WhatsApp), inbound routing, operator bot."""
