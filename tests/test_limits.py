"""HTTP bodies are bounded before any route reads them, console logins are limited per client
address and per username before any password is hashed, and a 429 says when to retry (issue 9)."""

import asyncio
import json
import time
import uuid

import httpx
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from hypothesis import example, given
from hypothesis import strategies as st

from tests import hostile
from tests.servers import PASSWORD, add_staff, bearer, create_user, sos_frame

LIMIT_BYTES = 64 * 1024
NEW_USER = json.dumps({"name": "Ann Lin", "phone": "+886912345678"}).encode()
BIG_BYTES = 60 * 1024 * 1024
MIB = 1024 * 1024
# The server's own buffers and allocator may move a little; a body read whole moves 60 MB.
RSS_GROWTH_BOUND_BYTES = 8 * MIB
JSON = {"Content-Type": "application/json"}


def padded(body: bytes, length: int) -> bytes:
    """`body` with trailing JSON whitespace up to `length` bytes: the same document, any size."""
    return body + b" " * (length - len(body))


def chunks(body: bytes, size: int = 16 * 1024):
    """An iterator body: httpx sends it chunked, with no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


async def async_chunks(body: bytes, size: int = 16 * 1024):
    """The same for httpx.AsyncClient."""
    for chunk in chunks(body, size):
        yield chunk


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    body = response.json()
    assert body["type"] == "error" and body["code"] == "too_large" and str(LIMIT_BYTES) in body["message"], body


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_of_64_kib_is_read_and_one_byte_more_is_refused_413(fresh_server, framing):
    server = fresh_server()
    _, token = create_user(server)
    sos = json.dumps(sos_frame()).encode()
    pings = json.dumps([{"seq": 0, "ts": int(time.time() * 1000), "lat": 25.03, "lon": 121.56}]).encode()

    def content(body: bytes, length: int):
        return padded(body, length) if framing == "content-length" else async_chunks(padded(body, length))

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for path, body, accepted in (("/v1/users", NEW_USER, 201), ("/v1/pings", pings, 200),
                                     ("/v1/sos", sos, 201)):
            answer = await client.post(path, content=content(body, LIMIT_BYTES), headers={**JSON, **bearer(token)})
            assert answer.status_code == accepted, (path, answer.text)
            assert_too_large(await client.post(path, content=content(body, LIMIT_BYTES + 1),
                                               headers={**JSON, **bearer(token)}))


async def test_a_declared_length_over_the_limit_is_refused_before_credentials_or_the_body(fresh_server):
    """Only the head is sent: the answer cannot have waited for the body, and no credential was asked."""
    server = fresh_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"POST /v1/pings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {BIG_BYTES}\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413 "), head
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            assert json.loads(await reader.readexactly(length))["code"] == "too_large"
    finally:
        writer.close()


async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit_not_when_it_ends(fresh_server):
    server = fresh_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b" " * (LIMIT_BYTES + 1)
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))  # and never the last chunk
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 "), head
    finally:
        writer.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_60_mb_body_is_refused_without_the_server_holding_it(fresh_server, framing):
    server = fresh_server()
    body = padded(NEW_USER, BIG_BYTES)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        assert (await client.post("/v1/users", content=NEW_USER, headers=JSON)).status_code == 201  # warm: imports, pools
        before = rss_bytes(server.pid)
        content = body if framing == "content-length" else async_chunks(body, MIB)
        assert_too_large(await client.post("/v1/users", content=content, headers=JSON))
        grown = rss_bytes(server.pid) - before
        assert grown < RSS_GROWTH_BOUND_BYTES, f"the server grew {grown / MIB:.1f} MiB"
        assert (await client.post("/v1/users", content=NEW_USER, headers=JSON)).status_code == 201, "the server still serves"


@given(length=st.integers(min_value=len(NEW_USER), max_value=2 * LIMIT_BYTES), chunked=st.booleans())
@example(length=LIMIT_BYTES, chunked=True)
@example(length=LIMIT_BYTES + 1, chunked=True)
@hostile.FUZZ
def test_any_body_is_refused_413_exactly_when_it_passes_64_kib(server, length, chunked):
    body = padded(NEW_USER, length)
    answer = httpx.post(f"{server.url}/v1/users", content=chunks(body) if chunked else body,
                        headers=JSON, timeout=10)
    assert answer.status_code == (413 if length > LIMIT_BYTES else 201), (length, chunked, answer.text)


async def login(client: httpx.AsyncClient, username: str, password: str = "wrong password",
                forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await client.post("/v1/console/login", json={"username": username, "password": password},
                             headers=headers)


def assert_rate_limited(response: httpx.Response, *, within_ms: int) -> int:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "rate_limited" and 0 < body["retry_after_ms"] <= within_ms, body
    assert response.headers["Retry-After"] == str(-(-body["retry_after_ms"] // 1000)), response.headers
    return body["retry_after_ms"]


async def test_logins_from_one_address_past_its_burst_are_refused_429_whatever_the_username(fresh_server):
    # 127.0.0.1, the test, is the trusted proxy: X-Forwarded-For names the client.
    server = fresh_server(GUARDIAN_LOGIN_ADDRESS_BURST="3", GUARDIAN_LOGIN_ADDRESS_PER_MINUTE="6")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        codes = [(await login(client, f"guess-{n}", forwarded_for="203.0.113.7")).status_code for n in range(3)]
        assert codes == [401] * 3
        assert_rate_limited(await login(client, "guess-9", forwarded_for="203.0.113.7"), within_ms=10_000)
        assert (await login(client, "guess-9", forwarded_for="198.51.100.9")).status_code == 401, "its own bucket"


async def test_guesses_at_one_username_from_many_addresses_are_refused_429_known_or_not(fresh_server, engine):
    server = fresh_server(GUARDIAN_LOGIN_USERNAME_BURST="2", GUARDIAN_LOGIN_USERNAME_PER_MINUTE="2")
    await add_staff(engine, "ann")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for username in ("ann", "nobody-by-this-name"):  # the same answers: no user enumeration
            codes = [(await login(client, username, forwarded_for=f"203.0.113.{n}")).status_code for n in range(2)]
            assert codes == [401, 401], username
            refusal = await login(client, username, PASSWORD, forwarded_for="198.51.100.9")
            assert_rate_limited(refusal, within_ms=30_000)
            assert set(refusal.json()) == {"type", "code", "message", "retry_after_ms"}
        assert (await login(client, "bob", forwarded_for="203.0.113.1")).status_code == 401, "its own bucket"


async def test_a_right_password_logs_in_once_the_refusal_has_waited_its_retry_after(fresh_server, engine):
    # One attempt every 3 s: far longer than the two wrong guesses' hashing takes.
    server = fresh_server(GUARDIAN_LOGIN_USERNAME_BURST="2", GUARDIAN_LOGIN_USERNAME_PER_MINUTE="20")
    await add_staff(engine, "ann")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert [(await login(client, "ann")).status_code for _ in range(2)] == [401, 401]
        wait_ms = assert_rate_limited(await login(client, "ann", PASSWORD), within_ms=3000)
        await asyncio.sleep(wait_ms / 1000 + 0.05)
        answer = await login(client, "ann", PASSWORD)
        assert answer.status_code == 200 and answer.json()["token"], answer.text


async def test_a_refused_login_costs_no_password_hash(fresh_server, engine):
    """Refusals answer in far less than one argon2 verification each: the limit comes first."""
    server = fresh_server(GUARDIAN_LOGIN_ADDRESS_BURST="1", GUARDIAN_LOGIN_ADDRESS_PER_MINUTE="0.01")
    hasher = PasswordHasher()  # the server's parameters (server/accounts/staff.py)
    stored = hasher.hash(str(uuid.uuid4()))
    started = time.perf_counter()
    for _ in range(5):
        with pytest.raises(VerifyMismatchError):
            hasher.verify(stored, "wrong password")
    verify_s = (time.perf_counter() - started) / 5
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await login(client, "ann")).status_code == 401
        started = time.perf_counter()
        refusals = [await login(client, "ann") for _ in range(40)]
        refused_s = (time.perf_counter() - started) / 40
    assert {answer.status_code for answer in refusals} == {429}
    assert refused_s < verify_s / 4, f"a refusal took {refused_s * 1000:.1f} ms, a verification {verify_s * 1000:.1f} ms"

