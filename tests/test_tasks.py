"""Owned background tasks are supervised, and /healthz says when one cannot work (issue 9 #13)."""

import asyncio
import logging
import time

import httpx
import pytest

from server.core.tasks import Health, OwnedTask
from tests.conftest import TEST_ENV
from tests.proxy import CuttableProxy, port_of, through


class Flaky(OwnedTask):
    """Crashes on its first run, then runs quietly: a stand-in for any owned component."""

    task_name = "flaky"

    def __init__(self, *, end_instead: bool = False):
        self.runs = 0
        self.end_instead = end_instead
        self.running_again = asyncio.Event()

    async def _run(self) -> None:
        self.runs += 1
        if self.runs == 1:
            if self.end_instead:
                return
            raise RuntimeError("a bug in one round")
        self.running_again.set()
        await asyncio.Event().wait()


@pytest.mark.no_services
async def test_a_crashed_owned_task_is_logged_with_its_traceback_and_started_again(caplog):
    flaky = Flaky()
    with caplog.at_level(logging.ERROR, logger="server.core.tasks"):
        flaky.start()
        await asyncio.sleep(0.2)
        assert flaky.health.problem is not None and "RuntimeError" in flaky.health.problem
        async with asyncio.timeout(5):
            await flaky.running_again.wait()
    await flaky.close()
    crash = next(record for record in caplog.records if "flaky crashed" in record.getMessage())
    assert crash.exc_info is not None and crash.exc_info[0] is RuntimeError, "logged with its traceback"
    assert flaky.runs == 2


@pytest.mark.no_services
async def test_an_owned_task_that_ends_by_itself_is_reported_and_started_again(caplog):
    flaky = Flaky(end_instead=True)
    with caplog.at_level(logging.ERROR, logger="server.core.tasks"):
        flaky.start()
        async with asyncio.timeout(5):
            await flaky.running_again.wait()
    await flaky.close()
    assert any("flaky ended by itself" in record.getMessage() for record in caplog.records)


@pytest.mark.no_services
async def test_closing_a_supervised_task_stops_it_for_good():
    flaky = Flaky()
    flaky.start()
    await asyncio.sleep(0.1)
    await flaky.close()
    runs = flaky.runs
    await asyncio.sleep(1.5)
    assert flaky.runs == runs and flaky._task.done()


@pytest.mark.no_services
def test_health_reports_a_failure_until_progress_and_no_progress_once_stale():
    health = Health("sweeper", stale_after_s=0.05)
    assert health.problem is None
    health.failed("storage unavailable")
    assert health.problem == "storage unavailable"
    health.progressed()
    assert health.problem is None
    time.sleep(0.1)
    assert health.problem.startswith("no progress for")


async def test_healthz_answers_503_naming_escalation_while_it_cannot_run(fresh_server):
    with CuttableProxy(port_of(TEST_ENV["GUARDIAN_DATABASE_URL"])) as proxy:
        server = fresh_server(GUARDIAN_DATABASE_URL=through(proxy, TEST_ENV["GUARDIAN_DATABASE_URL"]), GUARDIAN_SWEEP_INTERVAL_S="0.2")
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{server.url}/healthz")).status_code == 200
            proxy.cut()
            # Each component finds the cut on its own round: the trip timers may be first.
            answer = await poll(client, f"{server.url}/healthz", 503, naming="sweeper")
            assert "escalation cannot run" in answer.json()["problems"]["sweeper"]
            proxy.restore()
            answer = await poll(client, f"{server.url}/healthz", 200)
            assert "problems" not in answer.json()


async def poll(client: httpx.AsyncClient, url: str, status: int, timeout_s: float = 10.0,
               naming: str | None = None) -> httpx.Response:
    """The first answer with `status` (and, if given, a problem of the component `naming`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await client.get(url)
        named = naming is None or naming in answer.json().get("problems", {})
        if (answer.status_code == status and named) or time.monotonic() > deadline:
            assert answer.status_code == status, answer.text
            return answer
        await asyncio.sleep(0.1)
