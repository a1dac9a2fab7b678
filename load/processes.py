"""Starting and stopping a server process on a free loopback port (bench and tests)."""

import os
import signal
import socket
import subprocess
import time

import httpx

STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A command that serves HTTP on `port` and answers GET /healthz when ready."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int | None = None, log_file=None):
        """`log_file`: a file that takes the process's stdout and stderr (default: this process's)."""
        self.argv = argv
        self.log_file = log_file
        self.port = port or free_port()
        self.env = {**env, "GUARDIAN_PORT": str(self.port)}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=self.log_file, stderr=self.log_file)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        # One client, closed on the way out: a refused probe must not leave a socket behind.
        with httpx.Client(timeout=0.5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.argv} exited with {self.process.returncode} during start-up")
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    time.sleep(0.1)
        raise RuntimeError(f"{self.argv} did not answer /healthz in time")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final flush."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
