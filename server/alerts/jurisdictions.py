"""Precincts and stations in PostGIS: import, and which precinct answers for a place."""

import json

import sqlalchemy as sa
from geoalchemy2.shape import from_shape
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from geo.jurisdictions import Jurisdictions
from server.core.tables import precincts, point, stations


async def replace_all(*, connection: AsyncConnection, jurisdictions: Jurisdictions) -> None:
    """Upsert every precinct and station of the file; stations it no longer names are removed.

    Precincts are upserted, never deleted: alerts and dispatchers refer to them.
    """
    for precinct_id, name, area in jurisdictions.precincts:
        statement = pg.insert(precincts).values(precinct_id=precinct_id, name=name,
                                                area=from_shape(area, srid=4326))
        await connection.execute(statement.on_conflict_do_update(
            index_elements=[precincts.c.precinct_id],
            set_={"name": statement.excluded.name, "area": statement.excluded.area}))
    await connection.execute(sa.delete(stations))
    for station_id, name, precinct_id, location in jurisdictions.stations:
        await connection.execute(stations.insert().values(
            station_id=station_id, name=name, precinct_id=precinct_id, location=point(location.y, location.x)))


def route(*, lat: float, lon: float) -> tuple[sa.ColumnElement, sa.ColumnElement]:
    """SQL for (precinct id, out of area) of a place, to embed in a statement: the precinct
    containing it; outside every precinct, the nearest station's (else the nearest precinct's)."""
    here = point(lat, lon)
    inside = (sa.select(precincts.c.precinct_id).where(sa.func.ST_Intersects(precincts.c.area, here))
              .order_by(precincts.c.precinct_id).limit(1).scalar_subquery())
    nearest_station = (sa.select(stations.c.precinct_id).order_by(stations.c.location.op("<->")(here))
                       .limit(1).scalar_subquery())
    nearest_precinct = (sa.select(precincts.c.precinct_id).order_by(precincts.c.area.op("<->")(here))
                        .limit(1).scalar_subquery())
    return sa.func.coalesce(inside, nearest_station, nearest_precinct), inside.is_(None)


async def neighbours(*, connection: AsyncConnection, precinct_id: str) -> list[str]:
    """Precincts sharing a border (or a corner) with this one."""
    other = precincts.alias("other")
    rows = await connection.execute(
        sa.select(other.c.precinct_id)
        .select_from(precincts.join(other, sa.and_(other.c.precinct_id != precincts.c.precinct_id,
                                                  sa.func.ST_DWithin(precincts.c.area, other.c.area, 1e-7))))
        .where(precincts.c.precinct_id == precinct_id)
        .order_by(other.c.precinct_id))
    return [row.precinct_id for row in rows]


async def outlines(*, connection: AsyncConnection) -> dict:
    """Every precinct outline as a GeoJSON FeatureCollection: the console's offline basemap."""
    rows = await connection.execute(
        sa.select(precincts.c.precinct_id, precincts.c.name,
                  sa.func.ST_AsGeoJSON(precincts.c.area, 6).label("geometry")).order_by(precincts.c.precinct_id))
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": json.loads(row.geometry), "properties": {"id": row.precinct_id,
                                                                                  "name": row.name}}
        for row in rows]}
