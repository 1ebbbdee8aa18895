"""Messages outside campaigns (confirmations, operator alerts) wait out the provider's pacing:
WhatsApp allows one message per 6 s to a person, Telegram one a second per chat."""
from __future__ import annotations

import asyncio

from campaigns.ports import Channel, Line, OutboundMessage, RateLimited, SendResult

# A longer wait than this is not worth holding a confirmation or an alert for.
LONGEST_WAIT = 30.0


async def send_patiently(channel: Channel, line: Line, address: str, text: str,
                         first_wait: float = 0.0, attempts: int = 4) -> SendResult:
    """Sends `text`, retrying while the provider answers RateLimited with a short wait."""
    wait = first_wait
    for _ in range(attempts):
        if wait:
            await asyncio.sleep(wait)
        result = await channel.send(line, address, OutboundMessage(text))
        await channel.flush()
        if not isinstance(result, RateLimited) or result.retry_after > LONGEST_WAIT:
            return result
        wait = result.retry_after
    return result
