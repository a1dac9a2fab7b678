"""The CAD webhook: POST each alert event, signed, to a computer-aided-dispatch endpoint.

The body is signed with HMAC-SHA256 over `<timestamp>.<body>` so a receiver can
reject forgeries and replays; `X-Guardian-Event-Id` is unique per event, for the
receiver's own de-duplication (delivery is at-least-once, retried until a 2xx).
The body is the alert as it stands when sent: a retry never delivers stale state.
"""

import hashlib
import hmac
import time

import httpx

SIGNATURE_HEADER = "X-Guardian-Signature"
TIMESTAMP_HEADER = "X-Guardian-Timestamp"
EVENT_HEADER = "X-Guardian-Event-Id"
KIND_HEADER = "X-Guardian-Event-Kind"  # opened, updated, escalated


def sign(*, secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class CadChannel:
    def __init__(self, *, secret: bytes, timeout_s: float):
        self._secret = secret
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def post(self, *, url: str, event_id: str, kind: str, body: bytes) -> bool:
        """True when the endpoint answered 2xx; False on any other answer or no answer."""
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: event_id,
            KIND_HEADER: kind,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret=self._secret, timestamp=timestamp, body=body),
        }
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            return False
        return response.is_success

    async def close(self) -> None:
        await self._client.aclose()
