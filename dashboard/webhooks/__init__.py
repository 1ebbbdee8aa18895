"""Provider webhooks: what WhatsApp and Telegram post to a line, outside /api/v1 and its keys."""
