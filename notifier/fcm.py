"""Push through Firebase Cloud Messaging with firebase-admin: wake officers and contacts.

FCM is a secondary channel (DESIGN rule 7): a failure here is reported as a value
and never raised into the alert path. Tokens FCM calls unregistered or invalid
come back as `dead_tokens` for the caller to forget; quota and availability
errors come back with how long to wait (FCM's Retry-After when it sends one).
"""

import asyncio
import itertools
import warnings
from dataclasses import dataclass, field

import firebase_admin
from firebase_admin import credentials, exceptions, messaging

DEAD_TOKEN_ERRORS = (messaging.UnregisteredError, messaging.SenderIdMismatchError, exceptions.InvalidArgumentError)
TRANSIENT_ERRORS = (messaging.QuotaExceededError, exceptions.UnavailableError, exceptions.InternalError,
                    exceptions.DeadlineExceededError, exceptions.UnknownError)
DEFAULT_BACKOFF_S = 30.0
_app_names = itertools.count()


@dataclass(slots=True)
class PushResult:
    sent: int = 0
    dead_tokens: list[str] = field(default_factory=list)
    # Tokens to try again, and after how long; None when nothing is left to retry.
    retry_tokens: list[str] = field(default_factory=list)
    retry_after_s: float | None = None


class _AccessToken(credentials.Base):
    """A fixed OAuth access token: only for an FCM-compatible endpoint other than Google's."""

    def __init__(self, token: str):
        import google.oauth2.credentials

        self._credential = google.oauth2.credentials.Credentials(token)

    def get_credential(self):
        return self._credential


class FcmChannel:
    def __init__(self, *, project_id: str, timeout_s: float, credentials_file: str | None = None,
                 endpoint: str | None = None, access_token: str | None = None):
        """`credentials_file`: a service account JSON (production). `endpoint` + `access_token`:
        an FCM v1 compatible server instead of Google's, e.g. in tests."""
        if endpoint is None and credentials_file is None:
            raise ValueError("FCM needs a service account file, or an endpoint with an access token")
        credential = (_AccessToken(access_token or "") if endpoint is not None
                      else credentials.Certificate(credentials_file))
        self._app = firebase_admin.initialize_app(
            credential, {"projectId": project_id, "httpTimeout": timeout_s}, name=f"guardian-{next(_app_names)}")
        self._timeout_s = timeout_s
        if endpoint is not None:
            # firebase-admin has no setting for the FCM address; its service object keeps it here.
            service = messaging._get_messaging_service(self._app)
            service._fcm_url = f"{endpoint.rstrip('/')}/v1/projects/{project_id}/messages:send"

    async def send(self, *, tokens: list[str], data: dict[str, str]) -> PushResult:
        """A high-priority data message to each token. Never raises for a delivery failure."""
        result = PushResult()
        if not tokens:
            return result
        with warnings.catch_warnings():
            # Phones register FCM registration tokens, which the v1 API takes as `token`; the SDK
            # now prefers installation ids (`fid`) and warns about `token`.
            warnings.simplefilter("ignore", DeprecationWarning)
            messages = [
                messaging.Message(
                    token=token, data=data,
                    android=messaging.AndroidConfig(priority="high", ttl=300),
                    apns=messaging.APNSConfig(
                        headers={"apns-priority": "10", "apns-push-type": "background"},
                        payload=messaging.APNSPayload(aps=messaging.Aps(content_available=True))),
                )
                for token in tokens
            ]
        try:
            async with asyncio.timeout(self._timeout_s):
                batch = await messaging.send_each_async(messages, app=self._app)
        except (TimeoutError, exceptions.FirebaseError) as error:
            result.retry_tokens = list(tokens)
            result.retry_after_s = _retry_after(error)
            return result
        for token, response in zip(tokens, batch.responses):
            if response.success:
                result.sent += 1
            elif isinstance(response.exception, DEAD_TOKEN_ERRORS):
                result.dead_tokens.append(token)
            else:
                result.retry_tokens.append(token)
                wait = _retry_after(response.exception)
                result.retry_after_s = max(result.retry_after_s or 0.0, wait)
        return result

    async def close(self) -> None:
        # The SDK closes its async HTTP client with asyncio.run(), which needs a thread of its own.
        await asyncio.to_thread(firebase_admin.delete_app, self._app)


def _retry_after(error: BaseException | None) -> float:
    """FCM's Retry-After (seconds) when it sent one, else the default back-off."""
    response = getattr(error, "http_response", None)
    header = None if response is None else response.headers.get("Retry-After")
    try:
        return max(1.0, float(header)) if header is not None else DEFAULT_BACKOFF_S
    except ValueError:
        return DEFAULT_BACKOFF_S
