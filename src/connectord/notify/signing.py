"""Standard Webhooks signatures (https://www.standardwebhooks.com/), through the
``standardwebhooks`` package, the specification's reference implementation.

A message is signed as ``HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")``;
the ``webhook-signature`` header is ``v1,<base64 of that>``. The secret is
``whsec_`` and the base64 of its random bytes.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
#: The spec asks for 24 to 64 random bytes.
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret, ``whsec_<base64>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature_headers(secret: str, message_id: str, body: str, at: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt to send ``body`` (sent as is)."""
    stamp = datetime.fromtimestamp(int(at.timestamp()), UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, stamp, body),
    }
