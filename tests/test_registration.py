"""`POST /v1/users` is limited per client address (issue 9 #18)."""

import asyncio

import httpx
import pytest

from server.core import ratelimit

BODY = {"name": "Ann Lin", "phone": "+886912345678"}


async def register(client: httpx.AsyncClient, url: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await client.post(f"{url}/v1/users", json=BODY, headers=headers)


async def test_registrations_past_the_burst_are_refused_429_with_retry_after_ms(fresh_server):
    server = fresh_server(GUARDIAN_REGISTER_BURST="3", GUARDIAN_REGISTER_PER_HOUR="3600")  # then one a second
    async with httpx.AsyncClient(timeout=10) as client:
        answers = [await register(client, server.url) for _ in range(10)]
        assert [answer.status_code for answer in answers] == [201] * 3 + [429] * 7
        refusal = answers[-1].json()
        assert refusal["code"] == "rate_limited"
        assert 0 < refusal["retry_after_ms"] <= 1000
        await asyncio.sleep(refusal["retry_after_ms"] / 1000 + 0.05)
        assert (await register(client, server.url)).status_code == 201, "allowed again after retry_after_ms"
        assert (await register(client, server.url)).status_code == 429


async def test_behind_a_trusted_proxy_each_forwarded_client_address_has_its_own_limit(fresh_server):
    server = fresh_server(GUARDIAN_REGISTER_BURST="2")  # 127.0.0.1, the test, is the trusted proxy
    async with httpx.AsyncClient(timeout=10) as client:
        first = [(await register(client, server.url, "203.0.113.7")).status_code for _ in range(3)]
        other = [(await register(client, server.url, "198.51.100.9")).status_code for _ in range(3)]
    assert first == other == [201, 201, 429]


async def test_an_untrusted_peer_cannot_escape_the_limit_with_x_forwarded_for(fresh_server):
    server = fresh_server(GUARDIAN_REGISTER_BURST="2", GUARDIAN_FORWARDED_ALLOW_IPS="[]")
    async with httpx.AsyncClient(timeout=10) as client:
        codes = [(await register(client, server.url, f"203.0.113.{n}")).status_code for n in range(4)]
    assert codes == [201, 201, 429, 429]


@pytest.mark.no_services
@pytest.mark.parametrize(("one", "other", "same"), [
    ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),  # one subscriber's /64
    ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
    ("::ffff:192.0.2.1", "192.0.2.1", True),
    ("192.0.2.1", "192.0.2.2", False),
])
def test_a_client_is_limited_by_its_ipv4_address_or_its_ipv6_slash_64(one, other, same):
    assert (ratelimit.client_key(one) == ratelimit.client_key(other)) is same
