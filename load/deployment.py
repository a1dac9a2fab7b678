"""The production layout on one host, on free loopback ports: an alerts process, a phones
process with N workers, and nginx in front (`ops/proxy.sh`, the script operators run), for
the tests and the bench. Every process is stopped in `stop()`, nginx included.

    deployment = Deployment(env, workers=2)
    deployment.start()
    try:
        ... deployment.url, deployment.ws_url, deployment.kill_alerts(), deployment.start_alerts()
    finally:
        deployment.stop()
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from load.processes import ServerProcess, free_port

OPS = Path(__file__).resolve().parent.parent / "ops"
PROXY_STARTUP_TIMEOUT_S = 15.0


def serve_argv(role: str, workers: int = 1) -> list[str]:
    return [sys.executable, "-m", "server", "serve", "--role", role, "--workers", str(workers)]


class Deployment:
    def __init__(self, env: dict[str, str], *, workers: int = 1, log_file=None):
        """`env`: the servers' settings (database, Redis, limits). The consoles' origin is the
        proxy's address, as a deployment's would be its public one."""
        # Three distinct ports: a probe's port is free again once probed, so two probes can agree.
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        self.port, alerts_port, phones_port = ports
        self._run = Path(tempfile.mkdtemp(prefix="guardian-proxy-"))
        self._log_file = log_file
        self.env = {**env, "GUARDIAN_CONSOLE_ORIGINS": json.dumps([self.url])}
        self.alerts = ServerProcess(serve_argv("alerts"), self.env, port=alerts_port, log_file=log_file)
        self.phones = ServerProcess(serve_argv("phones", workers), self.env, port=phones_port, log_file=log_file)
        self.proxy: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        try:
            self.alerts.start()
            self.phones.start()
            self._start_proxy()
        except BaseException:
            self.stop()
            raise

    def _start_proxy(self) -> None:
        env = {**self.env, "GUARDIAN_PROXY_LISTEN": f"127.0.0.1:{self.port}",
               "GUARDIAN_PHONES_UPSTREAM": f"127.0.0.1:{self.phones.port}",
               "GUARDIAN_ALERTS_UPSTREAM": f"127.0.0.1:{self.alerts.port}"}
        self.proxy = subprocess.Popen([str(OPS / "proxy.sh"), "start", str(self._run)], env=env,
                                      stdout=self._log_file, stderr=self._log_file)
        deadline = time.monotonic() + PROXY_STARTUP_TIMEOUT_S
        with httpx.Client(timeout=0.5) as client:
            while time.monotonic() < deadline:
                if self.proxy.poll() is not None:
                    raise RuntimeError(f"nginx exited with {self.proxy.returncode}: {self.proxy_log()}")
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    time.sleep(0.1)
        raise RuntimeError(f"nginx did not answer in time: {self.proxy_log()}")

    def proxy_log(self) -> str:
        path = self._run / "error.log"
        return path.read_text() if path.exists() else ""

    def kill_alerts(self) -> None:
        """SIGKILL the alerts process: no shutdown, the outbox keeps what it did not deliver."""
        self.alerts.kill()

    def start_alerts(self) -> None:
        """A new alerts process on the same port (the proxy's upstream)."""
        self.alerts = ServerProcess(serve_argv("alerts"), self.env, port=self.alerts.port, log_file=self._log_file)
        self.alerts.start()

    def stop(self) -> None:
        try:
            if self.proxy is not None and self.proxy.poll() is None:
                self.proxy.terminate()  # nginx's fast shutdown
                try:
                    self.proxy.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proxy.kill()
                    self.proxy.wait(timeout=10)
        finally:
            self.phones.stop()
            self.alerts.stop()
            shutil.rmtree(self._run, ignore_errors=True)
