"""A PostgreSQL cluster of a test's own, to restart in immediate mode (a crash).

The shared server on port 5432 serves every other test, so it is never restarted:
this one is initdb'd into a temporary folder as the `postgres` user (we run as
root), listens on a free loopback port, and gets the schema and the demo
jurisdictions the way an operator would (`guardian db upgrade`, `jurisdictions demo`).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from tests.servers import free_port

BIN = "/usr/lib/postgresql/15/bin"
DATABASE = "guardian"


class Cluster:
    def __init__(self):
        self.port = free_port()
        self._folder = tempfile.mkdtemp(prefix="guardian-pg-")
        self._data = os.path.join(self._folder, "data")
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://guardian:guardian@127.0.0.1:{self.port}/{DATABASE}"

    def _as_postgres(self, *argv: str, **options) -> subprocess.CompletedProcess:
        command = list(argv) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(command, check=True, capture_output=True, text=True, **options)

    def _psql(self, sql: str, database: str = "postgres") -> None:
        self._as_postgres(f"{BIN}/psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                          "-v", "ON_ERROR_STOP=1", "-c", sql)

    def create(self, env: dict[str, str], *, revision: str = "head") -> None:
        """initdb, start, a `guardian` role and database with PostGIS and pg_partman, migrated (to
        `revision`), jurisdictions loaded."""
        if os.geteuid() == 0:
            shutil.chown(self._folder, "postgres", "postgres")
        self._as_postgres(f"{BIN}/initdb", "-D", self._data, "-U", "postgres", "-A", "trust", "--no-sync")
        self.start()
        self._psql("CREATE ROLE guardian LOGIN PASSWORD 'guardian'")
        self._psql(f"CREATE DATABASE {DATABASE} OWNER guardian")
        self.add_extensions()
        env = {**env, "GUARDIAN_DATABASE_URL": self.url}
        subprocess.run([sys.executable, "-m", "server", "db", "upgrade", revision], env=env, check=True)
        subprocess.run([sys.executable, "-m", "server", "jurisdictions", "demo"], env=env, check=True,
                       stdout=subprocess.DEVNULL)

    def add_extensions(self) -> None:
        """PostGIS and pg_partman, as ops/services.sh makes them (as a superuser)."""
        with open(os.path.join(os.path.dirname(__file__), "..", "ops", "extensions.sql")) as script:
            self._as_postgres(f"{BIN}/psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                              "-d", DATABASE, "-v", "ON_ERROR_STOP=1", "-v", "role=guardian", input=script.read())

    def start(self) -> None:
        # fsync off: a crash of PostgreSQL (not of the machine) keeps what it wrote, which is
        # all that an immediate-mode restart tests, and the suite's 2 cores are spared.
        options = f"-p {self.port} -k {self._folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(f"{BIN}/pg_ctl", "-D", self._data, "-o", options, "-l",
                          os.path.join(self._folder, "log"), "-w", "-t", "60", "start")

    def crash_and_restart(self, down_s: float = 0.5) -> None:
        """`pg_ctl -m immediate`: every backend killed, no checkpoint; then recovery from the WAL."""
        self._as_postgres(f"{BIN}/pg_ctl", "-D", self._data, "-m", "immediate", "-w", "stop")
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def destroy(self) -> None:
        try:
            self._as_postgres(f"{BIN}/pg_ctl", "-D", self._data, "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # never started, or already down
        shutil.rmtree(self._folder, ignore_errors=True)
