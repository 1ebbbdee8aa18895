"""What a recipient reads back after STOP, START or HELP: Turkish by default, English on
request; always names the sender and says how to stop or restart."""
from __future__ import annotations

from optout.keywords import Intent

_TEXTS = {
    "tr": {
        Intent.STOP: "{sender}: Talebiniz alındı; size artık ticari ileti göndermeyeceğiz. "
                     "Yeniden almak isterseniz BAŞLA yazıp yanıtlayın.",
        Intent.START: "{sender}: Yeniden abone oldunuz. Mesaj almak istemiyorsanız RET yazıp "
                      "yanıtlayın.",
        Intent.HELP: "{sender}{contact}: Mesaj almak istemiyorsanız RET yazıp yanıtlayın "
                     "(ücretsiz). Yeniden almak için BAŞLA yazın.",
    },
    "en": {
        Intent.STOP: "{sender}: You are unsubscribed and will receive no more marketing "
                     "messages. Reply START to subscribe again.",
        Intent.START: "{sender}: You are subscribed again. Reply STOP to unsubscribe.",
        Intent.HELP: "{sender}{contact}: Reply STOP to unsubscribe (free of charge), START to "
                     "subscribe again.",
    },
}
OPT_OUT_FOOTER = {"tr": "Mesaj almak istemiyorsanız RET yazıp yanıtlayın.",
                  "en": "To stop receiving messages, reply STOP."}


def reply_for(intent: Intent, sender: str, contact: str = "", language: str = "tr") -> str:
    texts = _TEXTS.get(language, _TEXTS["tr"])
    return texts[intent].format(sender=sender, contact=f" ({contact})" if contact else "")
