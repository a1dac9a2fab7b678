"""`python -m load ...`: the phone fleet, the baseline server, the standard benchmark, the off-route
check and the watchers."""

import asyncio
import json

import typer

from load import bench, cpuperping, fleet, framing, idle, offroute, overload, storecost, watchers
from load.stats import table

cli = typer.Typer(help="Simulated phones against a running Guardian server.", no_args_is_help=True)


@cli.command()
def phones(
    phones: int = typer.Option(100, help="How many phones."),
    rate_hz: float = typer.Option(1.0, help="Frames per second per phone."),
    batch: int = typer.Option(1, help="Pings per frame (1: single `ping` frames)."),
    duration: float = typer.Option(30.0, help="Measured seconds (after the warm-up)."),
    warmup: float = typer.Option(5.0, help="Seconds of streaming before measuring."),
    url: str = typer.Option("http://127.0.0.1:8000", help="The server."),
    procs: int = typer.Option(1, help="Load generator processes."),
    as_json: bool = typer.Option(False, "--json", help="Print the result row as JSON."),
) -> None:
    """Stream pings from N phones and report acked pings per second and ack latency."""
    tokens = asyncio.run(fleet.create_users(url, phones))
    plan = fleet.Plan(url=url, rate_hz=rate_hz, batch=batch, duration_s=duration, warmup_s=warmup)
    row = fleet.run(tokens, plan, procs=procs).row()
    print(json.dumps(row) if as_json else table([row]))


@cli.command("idle")
def idle_phones(
    phones: int = typer.Option(10_000, help="How many idle phones."),
    url: str = typer.Option("http://127.0.0.1:8000", help="The server."),
    server_pid: int = typer.Option(None, help="The server's pid, to report its memory per connection."),
    hold: float = typer.Option(10.0, help="Seconds to hold the connections."),
) -> None:
    """Connect N phones that send nothing; report what each costs the server."""
    tokens = asyncio.run(fleet.create_users(url, phones))
    report = asyncio.run(idle.hold(url, tokens, server_pid=server_pid, hold_s=hold))
    print(table([{key: str(value) for key, value in report.items()}]))


@cli.command()
def baseline(port: int = typer.Option(None, help="Port (default GUARDIAN_PORT).")) -> None:
    """Serve the storage-free baseline endpoint."""
    from load.baseline import create_app
    from server.cli import run_uvicorn
    from server.core.config import Settings

    settings = Settings(**({"port": port} if port else {}))
    run_uvicorn(create_app(), settings)


@cli.command("bench")
def run_bench(
    duration: float = typer.Option(60.0, help="Seconds of the main scenario (others run half as long)."),
    idle_phones: int = typer.Option(10_000, help="Idle phones for the memory scenario."),
    procs: int = typer.Option(1, help="Load generator processes."),
    only: str = typer.Option(None, help="Only one part: pings, sos, partitions, idle or isolation (issue 12: the SOS path beside an overloaded ingest, the roles, CPU per ping against today's main)."),
) -> None:
    """The standard scenarios, each beside the baseline in the same run."""
    bench.run_bench(duration_s=duration, idle_phones=idle_phones, procs=procs, only=only)


@cli.command("overload")
def run_overload(
    url: str = typer.Option("http://127.0.0.1:8000", help="The server (registering from one address: give it "
                                                          "a large GUARDIAN_REGISTER_BURST)."),
    server_pid: int = typer.Option(..., help="The server's pid, for its CPU time."),
    phones: int = typer.Option(2000, help="Phones sending single pings."),
    duration: float = typer.Option(15.0, help="Measured seconds of the 2 x C and C / 2 runs."),
    warmup: float = typer.Option(3.0, help="Seconds of streaming before measuring."),
    capacity: float = typer.Option(None, help="C in pings/s, to skip the ramp that measures it."),
) -> None:
    """The ingest's capacity C, then goodput and loop lag at 2 x C and CPU per ping at C / 2."""
    rows = overload.run_overload(url=url, server_pid=server_pid, phones=phones, duration_s=duration,
                                 warmup_s=warmup, capacity_per_s=capacity)
    print("\noverload\n" + table(rows))


@cli.command("offroute")
def run_offroute(
    vertices: int = typer.Option(5_000, help="Vertices of the planned route."),
    fixes: int = typer.Option(100_000, help="Fixes measured."),
    length_km: float = typer.Option(20.0, help="Length of the route."),
    seed: int = typer.Option(1, help="Seed of the route and the fixes."),
    budget: float = typer.Option(60.0, help="Seconds at most: fewer fixes are measured past it."),
) -> None:
    """Per-fix cost of the off-route distance beside a plain shapely distance, one process, no server."""
    offroute.run_offroute(vertices=vertices, fixes=fixes, length_m=length_km * 1000, seed=seed, budget_s=budget)


@cli.command("watchers")
def run_watchers(
    phones: int = typer.Option(2000, help="Phones streaming at 1 Hz."),
    watchers_count: int = typer.Option(1000, "--watchers", help="Watcher sockets, spread over the trips."),
    trips: int = typer.Option(500, help="Phones on a shared trip (the first ones)."),
    duration: float = typer.Option(30.0, help="Measured seconds of each phase (after the warm-up)."),
    warmup: float = typer.Option(5.0, help="Seconds of streaming before measuring."),
    url: str = typer.Option("http://127.0.0.1:8000", help="The server (registering from one address: give it "
                                                          "a large GUARDIAN_REGISTER_BURST)."),
    procs: int = typer.Option(1, help="Load generator processes for the phones."),
) -> None:
    """Ping acks without and with watchers, and the latency of a fix to its trip's watchers."""
    watchers.run_watchers(url=url, phones=phones, watchers=watchers_count, trips=min(trips, phones),
                          duration_s=duration, warmup_s=warmup, procs=procs)


@cli.command("cpuperping")
def run_cpuperping(
    revision: str = typer.Option(cpuperping.BASE_REVISION, help="The git revision compared with the working tree."),
    phones: int = typer.Option(300, help="Phones (300 x 10 Hz is half of this machine's capacity)."),
    rate_hz: float = typer.Option(10.0, help="Single pings per second per phone."),
    duration: float = typer.Option(15.0, help="Measured seconds of each run (after the warm-up)."),
    warmup: float = typer.Option(5.0, help="Seconds of streaming before measuring."),
    rounds: int = typer.Option(2, help="Runs of each side, interleaved A B A B."),
    redis_index: int = typer.Option(13, help="The Redis index both servers use (flushed first)."),
    database_prefix: str = typer.Option("guardian_cpp", help="Databases <prefix>_base and <prefix>_tree (dropped "
                                                             "and made fresh)."),
) -> None:
    """CPU µs per acked ping, server and PostgreSQL apart: a revision's server against the working tree's."""
    cpuperping.run(revision=revision, phones=phones, rate_hz=rate_hz, duration_s=duration, warmup_s=warmup,
                   rounds=rounds, redis_index=redis_index, database_prefix=database_prefix)


@cli.command("storecost")
def run_storecost(
    url: str = typer.Option(..., help="A scratch database at head (it keeps the rows)."),
    users: int = typer.Option(300, help="Pings per flush, one per user."),
    flushes: int = typer.Option(100, help="Flushes per run."),
    rounds: int = typer.Option(2, help="Runs of each statement, interleaved."),
) -> None:
    """PostgreSQL's CPU per stored ping: today's JSON-rows INSERT against COPY into a stage."""
    storecost.run(url=url, users=users, flushes=flushes, rounds=rounds)


@cli.command("framing")
def run_framing(
    phones: int = typer.Option(1000, help="Phones."),
    rate_hz: float = typer.Option(10.0, help="Single pings per second per phone."),
    duration: float = typer.Option(15.0, help="Measured seconds of each run (after the warm-up)."),
    warmup: float = typer.Option(5.0, help="Seconds of streaming before measuring."),
    rounds: int = typer.Option(2, help="Runs of each framing, interleaved."),
) -> None:
    """Server CPU per frame of a parse-and-ack server on each candidate websocket framing."""
    framing.run(phones=phones, rate_hz=rate_hz, duration_s=duration, warmup_s=warmup, rounds=rounds)


cli()
