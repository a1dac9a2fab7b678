"""A loopback TCP proxy that a test can cut, to take a real service away mid-stream."""

import asyncio
import threading
from urllib.parse import urlsplit, urlunsplit

from tests.servers import free_port


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every link and refuses new ones."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.port = free_port()
        self._target = (target_host, target_port)
        self._open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "CuttableProxy":
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._link, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        self._server.close()
        self._open = False
        self._cut()
        # Let every link finish on its own, so each closes its sockets (a link cancelled before it
        # started would leave its accepted socket to the garbage collector, and a warning).
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._cut()
        await self._server.wait_closed()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_writer = None
        try:
            if not self._open:
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
            if not self._open:  # cut while connecting
                return
            self._writers.update((writer, upstream_writer))
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer),
                                 return_exceptions=True)
        finally:
            # Closed on every way out (a cut, a shutdown mid-connect), or the garbage collector
            # finds the socket later and warns inside some other test.
            for end in (writer, upstream_writer):
                if end is not None:
                    end.transport.abort()
                    self._writers.discard(end)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
            self._writers.discard(writer)

    def _cut(self) -> None:
        self._open = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._cut)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_open", True)


def through(proxy, url: str) -> str:
    """`url` (a database or Redis URL of the tests) reached by way of `proxy`: same credentials,
    database and options, the proxy's address."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    address = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{credentials}@{address}" if credentials else address))


def port_of(url: str) -> int:
    """The port a test service URL points at (its scheme's default if none)."""
    parts = urlsplit(url)
    return parts.port or {"redis": 6379}.get(parts.scheme, 5432)
