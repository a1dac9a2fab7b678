"""The operator's CLI: serve, db upgrade/downgrade, history retire, rebuild-hot-state, jurisdictions, dispatcher, audit."""

import asyncio
import gc
import json
import logging
import os
import socket
import resource
from contextlib import asynccontextmanager
from pathlib import Path

import typer
import uvicorn

from server.core import logs
from server.core.config import Settings

cli = typer.Typer(help="Guardian operator commands.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
jurisdictions_cli = typer.Typer(help="Precincts and police stations.", no_args_is_help=True)
cli.add_typer(jurisdictions_cli, name="jurisdictions")
dispatcher_cli = typer.Typer(help="Dispatchers, the command centre and officers.", no_args_is_help=True)
cli.add_typer(dispatcher_cli, name="dispatcher")

history_cli = typer.Typer(help="Location history and its retention.", no_args_is_help=True)
cli.add_typer(history_cli, name="history")

MIGRATIONS = Path(__file__).parent / "core" / "migrations"


def run_uvicorn(app, settings: Settings, sock: socket.socket | None = None) -> None:
    """Serve an ASGI app with Guardian's socket settings (also used by the load baseline).
    `sock`: a bound listening socket to serve instead of binding `settings.host:port`
    (one of the phones role's workers, `core.workers`)."""
    from server.core import gate

    # Every descriptor the system allows this process: connections are bounded by the gate.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    options = dict(
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=gate.protocol_class(settings),
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.keepalive_interval_s,
        ws_ping_timeout=settings.keepalive_timeout_s,
        ws_per_message_deflate=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        access_log=False,
        log_level="warning",
        backlog=4096,
        timeout_graceful_shutdown=10,
    )
    if sock is None:
        uvicorn.run(app, **options)
        return
    server = uvicorn.Server(uvicorn.Config(app, **options))
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(3)


@cli.command()
def serve(
    host: str = typer.Option(None, help="Address to bind (default GUARDIAN_HOST)."),
    port: int = typer.Option(None, help="Port (default GUARDIAN_PORT)."),
    role: str = typer.Option(None, help="all, phones or alerts (default GUARDIAN_ROLE, else all): all serves "
                                        "everything in one process, phones and alerts are the two halves of "
                                        "the production layout (README)."),
    workers: int = typer.Option(None, help="Processes serving the port, phones role only (default "
                                           "GUARDIAN_WORKERS, else 1)."),
) -> None:
    """Serve the API, the phone socket and the consoles (or one role's share of them)."""
    from pydantic import ValidationError

    from server.app import create_app
    from server.core import workers as prefork

    overrides = {key: value for key, value in {"host": host, "port": port, "role": role,
                                               "workers": workers}.items() if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        raise typer.BadParameter("; ".join(str(problem["msg"]) for problem in error.errors())) from None
    logs.configure(settings.log_level)
    logging.getLogger(__name__).info("serving on http://%s:%d (role %s)", settings.host, settings.port, settings.role)
    if settings.role == "phones" and settings.phones_nice:
        # Below the alerts process, which keeps the default priority (raising it needs root).
        os.nice(settings.phones_nice)
    app = create_app(settings)
    # The ingest allocates a few small objects per ping, and every open session and queued
    # ping is a live container: with the default young-generation threshold (700) the
    # collector runs thousands of times a second over them. Measured: +23% acked pings/s.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    if settings.workers == 1:
        run_uvicorn(app, settings)
        return
    raise typer.Exit(prefork.serve_forked(lambda sock: run_uvicorn(app, settings, sock), host=settings.host,
                                          port=settings.port, count=settings.workers))


@db_cli.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply Alembic migrations up to REVISION."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", Settings().database_url)
    command.upgrade(config, revision)


@db_cli.command("downgrade")
def db_downgrade(revision: str = typer.Argument(...)) -> None:
    """Revert Alembic migrations down to REVISION (0009's downgrade copies the whole history)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", Settings().database_url)
    command.downgrade(config, revision)


@history_cli.command("retire")
def history_retire(now: str = typer.Option(None, help="Run as if it were this RFC 3339 time (default: now).")) -> None:
    """Drop the history's partitions past GUARDIAN_HISTORY_RETENTION_DAYS (keeping alerts' tracks),
    alerts past GUARDIAN_ALERT_RETENTION_DAYS, and make the partitions ahead: what every server
    process does periodically, one at a time."""
    from datetime import datetime, timezone

    from server.alerts import retention

    try:
        moment = datetime.now(timezone.utc) if now is None else datetime.fromisoformat(now)
    except ValueError:
        raise typer.BadParameter(f"--now {now!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise typer.BadParameter("--now needs a time zone")
    settings = Settings()

    async def run():
        async with _engine() as engine:
            return await retention.retire(engine=engine, now=moment,
                                          history_retention_days=settings.history_retention_days,
                                          alert_retention_days=settings.alert_retention_days)

    from server.core import db

    try:
        done = asyncio.run(run())
    except db.STORAGE_ERRORS as error:
        typer.echo(f"retention run stopped ({db.describe(error)}); run it again", err=True)
        raise typer.Exit(2) from None
    if not done.ran:
        typer.echo("another process is running the retention job; nothing done")
        raise typer.Exit(1)
    typer.echo(f"made {len(done.made)} partitions, dropped {len(done.dropped)} ({', '.join(done.dropped) or '-'}), "
               f"kept {done.kept_fixes} alert fixes, removed {done.default_removed} default rows "
               f"and {done.alerts_removed} alerts")


@cli.command("rebuild-hot-state")
def rebuild_hot_state() -> None:
    """Copy every last location from PostgreSQL into Redis (after a Redis wipe)."""
    from server.core import db
    from server.positions import hotstate
    from server.app import connect_redis

    async def run() -> int:
        settings = Settings()
        engine, redis = db.create_engine(settings, pool_size=1), connect_redis(settings)
        try:
            return await hotstate.rebuild(redis=redis, engine=engine)
        finally:
            await redis.aclose()
            await engine.dispose()

    typer.echo(f"rebuilt the hot state of {asyncio.run(run())} users")


def main() -> None:
    cli()


@asynccontextmanager
async def _engine():
    from server.core import db

    engine = db.create_engine(Settings(), pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


def _import(document: dict) -> int:
    from geo.jurisdictions import parse_geojson
    from server.alerts import jurisdictions

    try:
        parsed = parse_geojson(document)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None

    async def run() -> None:
        async with _engine() as engine, engine.begin() as connection:
            await jurisdictions.replace_all(connection=connection, jurisdictions=parsed)

    asyncio.run(run())
    return len(parsed.precincts)


@jurisdictions_cli.command("import")
def jurisdictions_import(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A GeoJSON file.")) -> None:
    """Load precincts (kind=precinct polygons) and stations (kind=station points) from GeoJSON."""
    try:
        document = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise typer.BadParameter(f"{file}: not JSON ({error})") from None
    typer.echo(f"imported {_import(document)} precincts from {file}")


@jurisdictions_cli.command("demo")
def jurisdictions_demo(export: Path = typer.Option(None, help="Write the GeoJSON here instead of importing it.")) -> None:
    """Taipei City's police precincts (Voronoi cells of the stations, clipped to the city)."""
    from geo.jurisdictions import to_geojson
    from geo.taipei import taipei_precincts

    document = to_geojson(taipei_precincts())
    if export is not None:
        export.write_text(json.dumps(document))
        typer.echo(f"wrote {export}")
        return
    typer.echo(f"imported {_import(document)} Taipei precincts")


@dispatcher_cli.command("add")
def dispatcher_add(
    username: str = typer.Option(...),
    password_file: Path = typer.Option(..., exists=True, dir_okay=False, help="The password, on its first line."),
    precinct: str = typer.Option(None, help="The precinct this dispatcher (or officer) serves."),
    all_precincts: bool = typer.Option(False, "--all-precincts", help="The command centre: every precinct."),
    officer: bool = typer.Option(False, "--officer", help="A patrol officer's phone, not a console."),
) -> None:
    """Create a dispatcher (--precinct), the command centre (--all-precincts) or an officer (--officer --precinct)."""
    from sqlalchemy.exc import IntegrityError

    from server.accounts import staff

    if all_precincts == (precinct is not None):
        raise typer.BadParameter("give exactly one of --precinct and --all-precincts")
    role = "officer" if officer else "command" if all_precincts else "dispatcher"
    password = password_file.read_text().splitlines()[0] if password_file.read_text() else ""

    async def run():
        async with _engine() as engine, engine.begin() as connection:
            return await staff.add(connection=connection, username=username, password=password, role=role,
                                   precinct_id=precinct)

    try:
        staff_id = asyncio.run(run())
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    except IntegrityError:
        raise typer.BadParameter(f"username {username!r} is taken, or precinct {precinct!r} does not exist") from None
    typer.echo(f"added {role} {username} ({staff_id})")


@cli.command("audit")
def audit(
    alert: str = typer.Option(None, help="Only reads of this alert."),
    username: str = typer.Option(None, help="Only reads by this staff member."),
    limit: int = typer.Option(100, min=1, max=100_000),
) -> None:
    """Who was shown which user's location, for which alert, and when (newest first)."""
    import sqlalchemy as sa

    from server.core.tables import audit_reads, staff

    query = (sa.select(audit_reads.c.read_at, staff.c.username, audit_reads.c.alert_id, audit_reads.c.user_id,
                       audit_reads.c.context)
             .select_from(audit_reads.join(staff)).order_by(audit_reads.c.read_at.desc()).limit(limit))
    if alert:
        query = query.where(sa.cast(audit_reads.c.alert_id, sa.Text) == alert)
    if username:
        query = query.where(staff.c.username == username)

    async def run():
        async with _engine() as engine, engine.connect() as connection:
            return (await connection.execute(query)).all()

    for row in asyncio.run(run()):
        typer.echo(f"{row.read_at.isoformat()}\t{row.username}\t{row.alert_id}\t{row.user_id}\t{row.context}")
