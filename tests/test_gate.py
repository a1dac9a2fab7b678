"""Slow or half-sent requests cannot hold the server's connections (issue 9 #17)."""

import asyncio
import json
import sys
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from load import processes
from tests.servers import bearer, connect_phone, create_user, receive, sos_frame, until_type

HALF_UPGRADE = (b"GET /v1/phone HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Version: 13\r\n")  # no blank line: the headers never end


async def half_sent(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """`count` connections that each send part of an upgrade request and then nothing."""
    opened = []
    for _ in range(count):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            break
        writer.write(HALF_UPGRADE)
        opened.append((reader, writer))
    await asyncio.gather(*(writer.drain() for _, writer in opened), return_exceptions=True)
    return opened


async def still_open(links, wait_s: float) -> int:
    """How many of these connections the server has not closed within `wait_s`."""
    async def closed(reader: asyncio.StreamReader) -> bool:
        try:
            async with asyncio.timeout(wait_s):
                while await reader.read(4096):
                    pass
            return True
        except TimeoutError:
            return False
        except OSError:
            return True

    results = await asyncio.gather(*(closed(reader) for reader, _ in links))
    return results.count(False)


def close_all(links) -> None:
    for _, writer in links:
        writer.transport.abort()


async def test_half_sent_upgrades_are_closed_after_the_request_timeout(fresh_server):
    server = fresh_server(GUARDIAN_REQUEST_TIMEOUT_S="1")
    links = await half_sent(server.port, 200)
    try:
        assert len(links) == 200
        started = time.monotonic()
        assert await still_open(links, 4.0) == 0, "every half-sent request closed"
        assert time.monotonic() - started < 4.0
    finally:
        close_all(links)


async def test_a_request_whose_body_never_ends_is_closed_after_the_request_timeout(fresh_server):
    server = fresh_server(GUARDIAN_REQUEST_TIMEOUT_S="1")
    _, token = create_user(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"POST /v1/sos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode())
        await writer.drain()
        assert await still_open([(reader, writer)], 4.0) == 0
    finally:
        writer.transport.abort()


async def test_an_sos_and_a_connected_phone_get_through_while_half_sent_requests_fill_the_descriptors(test_env):
    """The server may open 1,024 descriptors; 1,100 half-sent upgrades arrive. The oldest
    incomplete requests make room, so a new phone's POST /v1/sos is still answered and an
    already connected phone still gets its sos_ack."""
    server = processes.ServerProcess(["prlimit", "--nofile=1024:1024", sys.executable, "-m", "server", "serve"],
                                     {**test_env, "GUARDIAN_REQUEST_TIMEOUT_S": "30"})
    server.start()
    links = []
    try:
        _, connected_token = create_user(server)
        _, new_token = create_user(server)
        phone, _ = await connect_phone(server, connected_token)
        links = await half_sent(server.port, 1100)
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.post(f"{server.url}/v1/sos", json=sos_frame(), headers=bearer(new_token))
        assert answer.status_code == 201, answer.text
        await phone.send(json.dumps(sos_frame()))
        await until_type(phone, "sos_ack", timeout_s=5)
        await phone.close()
    finally:
        close_all(links)
        server.stop()


async def test_a_new_socket_of_a_device_replaces_its_old_one_which_is_closed_with_4001(server):
    _, token = create_user(server)
    sockets = [(await connect_phone(server, token))[0] for _ in range(20)]
    newest = sockets.pop()
    for old in sockets:
        with pytest.raises(ConnectionClosed):
            await receive(old, timeout_s=5)
        assert old.close_code == 4001, "replaced, clearly"
        assert "replaced" in old.close_reason
    await newest.send(json.dumps({"type": "ping", "seq": 0, "ts": int(time.time() * 1000), "lat": 25.03,
                                  "lon": 121.56}))
    assert (await receive(newest))["type"] == "ack", "the newest socket works"
    await newest.close()
