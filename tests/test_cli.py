"""The operator's CLI: dispatchers, jurisdictions, audit."""

import json
import subprocess
import sys

import httpx
import pytest
import sqlalchemy as sa

from geo.jurisdictions import to_geojson
from geo.taipei import taipei_precincts


def guardian(test_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server", *args], env=test_env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("extra, role", [(["--precinct", "xinyi"], "dispatcher"), (["--all-precincts"], "command"),
                                         (["--precinct", "beitou", "--officer"], "officer")])
async def test_dispatcher_add_hashes_the_password_and_the_account_can_log_in(server, engine, test_env, tmp_path,
                                                                            extra, role):
    password = tmp_path / "password"
    password.write_text("a long enough password\n")
    result = guardian(test_env, "dispatcher", "add", "--username", "lee", "--password-file", str(password), *extra)
    assert result.returncode == 0, result.stderr
    async with engine.connect() as connection:
        row = (await connection.execute(sa.text("SELECT role, password_hash FROM staff WHERE username = 'lee'"))).one()
    assert row.role == role and row.password_hash.startswith("$argon2id$")
    login = httpx.post(f"{server.url}/v1/console/login", json={"username": "lee",
                                                              "password": "a long enough password"})
    assert login.status_code == 200


@pytest.mark.parametrize("args, complaint", [
    (["--precinct", "xinyi", "--all-precincts"], "exactly one"),
    ([], "exactly one"),
    (["--precinct", "atlantis"], "does not exist"),
])
def test_dispatcher_add_refuses_bad_accounts_clearly(test_env, tmp_path, args, complaint):
    password = tmp_path / "password"
    password.write_text("a long enough password\n")
    result = guardian(test_env, "dispatcher", "add", "--username", "x", "--password-file", str(password), *args)
    assert result.returncode != 0 and complaint in result.stderr


def test_short_passwords_are_refused(test_env, tmp_path):
    password = tmp_path / "password"
    password.write_text("short\n")
    result = guardian(test_env, "dispatcher", "add", "--username", "x", "--password-file", str(password),
                      "--precinct", "xinyi")
    assert result.returncode != 0 and "12 characters" in result.stderr


@pytest.mark.parametrize("document, complaint", [
    ({"type": "Feature"}, "FeatureCollection"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"kind": "precinct", "id": "p",
                                                                                    "name": "P"},
                                                  "geometry": {"type": "Point", "coordinates": [121.5, 25.0]}}]},
     "Polygon"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"kind": "station", "id": "s",
                                                                                    "name": "S", "precinct_id": "x"},
                                                  "geometry": {"type": "Point", "coordinates": [121.5, 25.0]}}]},
     "unknown precinct"),
])
def test_jurisdictions_import_refuses_bad_files_and_changes_nothing(test_env, tmp_path, document, complaint):
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps(document))
    result = guardian(test_env, "jurisdictions", "import", str(path))
    assert result.returncode != 0 and complaint in result.stderr


async def test_jurisdictions_import_loads_precincts_and_stations(test_env, tmp_path, engine):
    path = tmp_path / "taipei.geojson"
    path.write_text(json.dumps(to_geojson(taipei_precincts())))
    result = guardian(test_env, "jurisdictions", "import", str(path))
    assert result.returncode == 0, result.stderr
    async with engine.connect() as connection:
        here = await connection.scalar(sa.text(
            "SELECT precinct_id FROM precincts WHERE ST_Intersects(area, ST_SetSRID(ST_MakePoint(121.5645, 25.0339), "
            "4326))"))
        stations = await connection.scalar(sa.text("SELECT count(*) FROM stations"))
    assert (here, stations) == ("xinyi", 14)
