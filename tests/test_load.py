"""The load tools work: a small fleet against the full server and against the baseline."""

import json
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from load import fleet
from load.processes import ServerProcess

FLEET = ["--phones", "5", "--rate-hz", "5", "--duration", "2", "--warmup", "0.5"]


def run_fleet(url: str, *extra: str) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "load", "phones", *FLEET, *extra, "--url", url, "--json"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.parametrize("batch", ["1", "10"])
def test_the_fleet_streams_into_the_full_server_without_errors(server, batch):
    row = run_fleet(server.url, "--batch", batch)
    assert row["phones"] == "5/5" and row["errors"] == "0"
    assert int(row["acked"].replace(",", "")) > 0


def test_a_phone_the_server_turns_away_is_counted_and_not_waited_for(server):
    plan = fleet.Plan(url=server.url, rate_hz=5, batch=1, duration_s=0.5, warmup_s=0.1)
    started = time.monotonic()
    result = fleet.run(["not a device token"], plan, connect_lead_s=0.5)
    assert (result.connected, result.errors) == (0, {"connect:ConnectionError": 1})
    assert time.monotonic() - started < 10
    refused = fleet.run(["not a device token"], replace(plan, url=server.url + "/nowhere"), connect_lead_s=0.5)
    assert (refused.connected, refused.errors) == (0, {"connect:InvalidStatus": 1}), "a refused upgrade"


def test_the_fleet_streams_into_the_baseline(test_env):
    baseline = ServerProcess([sys.executable, "-m", "load", "baseline"], test_env)
    baseline.start()
    try:
        row = run_fleet(baseline.url)
    finally:
        baseline.stop()
    assert row["phones"] == "5/5" and row["errors"] == "0" and int(row["acked"].replace(",", "")) > 0


async def test_the_sos_scenario_times_every_sos_on_every_console(fresh_server, test_env):
    import asyncio

    from load import bench, fleet

    server = fresh_server()
    phones = await fleet.create_users(server.url, 10)
    stream, sos_row = await asyncio.to_thread(bench.run_sos_scenario, server, phones, test_env, sos_count=5,
                                              consoles=2, spread_s=1.0, rate_hz=2.0, duration_s=3.0)
    assert stream["phones"] == "10/10" and stream["errors"] == "0"
    assert sos_row["SOS raised/acked"] == "5/5"
    assert (sos_row["delivered once"], sos_row["missing"], sos_row["duplicates"]) == ("10/10", "0", "0")
    assert float(sos_row["p99 ms"]) < 5000
