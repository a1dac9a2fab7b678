"""Local HTTP peers for the channels we cannot reach here: an FCM v1 endpoint and a CAD receiver.

Both run in a thread on a free loopback port and record what they were sent.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    def record(self, entry: dict) -> None:
        with self.lock:
            self.requests.append(entry)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        with self.lock:
            return list(self.requests)


def _fcm_error(http_status: int, status: str, code: str) -> tuple[int, dict]:
    return http_status, {"error": {"code": http_status, "message": code, "status": status, "details": [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}}


class FakeFcm(Recorder):
    """Speaks `POST /v1/projects/{project}/messages:send`. How it answers depends on the token's
    prefix: `unregistered-`, `invalid-`, `quota-` (429 with Retry-After: 1), `hang-` (no answer for
    `hang_s`), anything else succeeds."""

    def __init__(self, hang_s: float = 30.0):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                token = body["message"]["token"]
                fake.record({"path": self.path, "authorization": self.headers.get("Authorization"), "body": body})
                headers = {}
                if token.startswith("hang-"):
                    time.sleep(fake.hang_s)
                    status, answer = 200, {"name": "late"}
                elif token.startswith("unregistered-"):
                    status, answer = _fcm_error(404, "NOT_FOUND", "UNREGISTERED")
                elif token.startswith("invalid-"):
                    status, answer = _fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
                elif token.startswith("quota-"):
                    status, answer = _fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
                    headers["Retry-After"] = "1"
                else:
                    status, answer = 200, {"name": f"projects/x/messages/{len(fake.requests)}"}
                payload = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    for name, value in {**headers, "Content-Type": "application/json",
                                        "Content-Length": str(len(payload))}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        super().__init__(Handler)
        self.hang_s = hang_s


class CadReceiver(Recorder):
    """Records each POST; answers 500 to the first `fail_first` of them, then 204."""

    def __init__(self, fail_first: int = 0):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.seen += 1
                    failing = receiver.seen <= receiver.fail_first
                if not failing:
                    receiver.record({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)
        self.fail_first = fail_first
        self.seen = 0
