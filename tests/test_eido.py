"""The CAD payload: an EIDO object valid against NENA's schema, its location a well-formed PIDF-LO."""

import functools
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from notifier import eido

pytestmark = pytest.mark.no_services

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "eido" / "Schema"
NOW = datetime(2026, 11, 21, 8, 30, tzinfo=UTC)


def facts(**changes) -> eido.Facts:
    values = dict(alert_id=str(uuid.uuid4()), status="open", duress=False, opened_at=NOW, updated_at=NOW,
                  user_id=str(uuid.uuid4()), user_name="Ann Lin", user_phone="+886 912-345-678",
                  precinct_id="xinyi", precinct_name="Xinyi Precinct", lat=25.0339, lon=121.5645, accuracy_m=8.0,
                  fix_ts=NOW, quality="fix")
    values.update(changes)
    return eido.Facts(**values)


@functools.cache
def eido_validator():
    """A validator for EmergencyIncidentDataObjectType, resolving the NIEM files beside the schema."""
    from openapi_schema_validator import OAS30Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    def load(path: Path) -> dict:
        return yaml.safe_load(path.read_text())

    root = load(SCHEMA_DIR / "openapi.yaml")
    resources = [(f"file:///eido/{path.relative_to(SCHEMA_DIR).as_posix()}",
                  Resource.from_contents(load(path), default_specification=DRAFT4))
                 for path in (SCHEMA_DIR / "NIEMComponents").glob("*.yaml")]
    base = "file:///eido/openapi.yaml"
    registry = Registry().with_resources([(base, Resource.from_contents(root, default_specification=DRAFT4)),
                                          *resources])
    schema = {"$ref": f"{base}#/components/schemas/EmergencyIncidentDataObjectType"}
    return OAS30Validator(schema, registry=registry)


@pytest.mark.skipif(not SCHEMA_DIR.exists(), reason=f"NENA's EIDO schema is not beside this clone ({SCHEMA_DIR})")
@pytest.mark.parametrize("changes", [
    {},
    {"duress": True, "status": "acknowledged", "notes": ("unit 12 on the way",)},
    {"lat": None, "lon": None, "accuracy_m": None, "fix_ts": None, "quality": "unknown", "precinct_id": None},
    {"accuracy_m": None, "status": "resolved"},
])
def test_eido_object_is_valid_against_nenas_schema(changes):
    document = eido.eido(facts(**changes), agency_id="police.taipei.gov.tw", issuing_element="guardian.example")
    errors = sorted(eido_validator().iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(error.path)}: {error.message}" for error in errors[:5])


def taxi(**changes) -> eido.TripFacts:
    values = dict(trip_id=str(uuid.uuid4()), kind="taxi", status="alert", started_at=NOW, plate="ABC-1234",
                  driver_name="Chen Wei", make="Toyota Wish", colour="yellow", destination=(25.0478, 121.517),
                  eta=NOW.replace(hour=9), planned_route_m=5234.0)
    values.update(changes)
    return eido.TripFacts(**values)


@pytest.mark.skipif(not SCHEMA_DIR.exists(), reason=f"NENA's EIDO schema is not beside this clone ({SCHEMA_DIR})")
@pytest.mark.parametrize("changes", [
    {"trip": taxi()},
    {"trip": taxi(), "duress": True, "notes": ("unit 12 on the way",)},
    {"trip": taxi(make=None, colour=None, driver_name=None, destination=None, eta=None, planned_route_m=None)},
    {"trip": taxi(kind="hike", plate=None, driver_name=None, make=None, colour=None, eta=None,
                  expected_return=NOW.replace(hour=18))},
])
def test_eido_of_an_alert_during_a_trip_is_valid_against_nenas_schema(changes):
    document = eido.eido(facts(**changes), agency_id="police.taipei.gov.tw", issuing_element="guardian.example")
    errors = sorted(eido_validator().iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(error.path)}: {error.message}" for error in errors[:5])


def test_eido_carries_the_taxi_as_its_vehicle_component_and_the_trip_in_a_note():
    trip = taxi()
    document = eido.eido(facts(trip=trip, duress=True), agency_id="police.taipei.gov.tw",
                         issuing_element="guardian.example")
    [vehicle] = document["vehicleComponent"]
    assert document["incidentComponent"]["vehicleReference"] == [{"$ref": vehicle["$id"]}]
    assert vehicle["vehicleRelationshipType"] == ["Involved"] and vehicle["vehicleRelationshipTimeStamp"] == \
        "2026-11-21T08:30:00Z"
    described = vehicle["ncVehicleComponent"]
    assert described["identification"] == [{"identificationId": [{"value": "ABC-1234"}],
                                            "conveyanceCategoryCode": [{"simpleType": "LPN"}]}]
    assert described["makeName"] == [{"value": "Toyota Wish"}]
    assert described["conveyanceColorPrimary"] == [{"value": "yellow"}]
    assert described["vehicleUse"] == [{"value": "Taxi"}]
    notes = {note["$id"]: note["notesActionComments"] for note in document["notesComponent"]}
    [said] = [notes[reference["$ref"]] for reference in vehicle["notesReference"]]
    for part in ("Taxi ride since 2026-11-21T08:30:00Z", "plate ABC-1234", "driver Chen Wei",
                 "vehicle Toyota Wish, yellow", "destination 25.04780, 121.51700", "ETA 2026-11-21T09:30:00Z",
                 "planned route 5.2 km"):
        assert part in said
    assert document["notesComponent"][0]["notesActionComments"].startswith("DURESS"), "duress stays first"
    assert {reference["$ref"] for reference in document["incidentComponent"]["notesReference"]} == set(notes)


def test_eido_of_a_hike_has_no_vehicle_but_its_trip_note():
    document = eido.eido(facts(trip=taxi(kind="hike", plate=None, make=None, colour=None, driver_name=None,
                                         eta=None, expected_return=NOW.replace(hour=18))),
                         agency_id="police.taipei.gov.tw", issuing_element="guardian.example")
    assert "vehicleComponent" not in document and "vehicleReference" not in document["incidentComponent"]
    [note] = document["notesComponent"]
    assert note["notesActionComments"].startswith("Trip: Hike since")
    assert "expected back 2026-11-21T18:30:00Z" in note["notesActionComments"]


def test_a_vehicle_component_of_the_wrong_shape_is_caught_by_the_validator():
    """The validator reads the vehicle component through to NIEM's types: a plate or make given as
    bare text (NIEM texts are objects) or a vehicle with no relationship fails."""
    if not SCHEMA_DIR.exists():
        pytest.skip("NENA's EIDO schema is not beside this clone")
    document = eido.eido(facts(trip=taxi()), agency_id="police.taipei.gov.tw", issuing_element="guardian.example")
    [vehicle] = document["vehicleComponent"]
    vehicle["ncVehicleComponent"]["makeName"] = ["Toyota Wish"]
    vehicle["ncVehicleComponent"]["identification"][0]["conveyanceCategoryCode"] = [{"simpleType": "PLATE"}]
    del vehicle["vehicleRelationshipType"]
    assert len(list(eido_validator().iter_errors(document))) >= 3


def test_invalid_eido_is_caught_by_the_validator():
    """The validator is not vacuous: an EIDO without its required fields fails."""
    if not SCHEMA_DIR.exists():
        pytest.skip("NENA's EIDO schema is not beside this clone")
    document = eido.eido(facts(), agency_id="police.taipei.gov.tw", issuing_element="guardian.example")
    del document["eidoVersion"]
    document["agencyComponent"][0].pop("agencyType")
    assert len(list(eido_validator().iter_errors(document))) >= 2


def test_pidf_lo_has_the_rfc_4119_and_5491_structure():
    text = eido.pidf_lo(facts(accuracy_m=12.5), provider="guardian.example")
    presence = ET.fromstring(text.split("?>", 1)[1])
    ns = {"p": eido.PIDF, "gp": eido.GEOPRIV, "dm": eido.DATA_MODEL, "gml": eido.GML, "gs": eido.GEOSHAPE}
    assert presence.tag == f"{{{eido.PIDF}}}presence"
    geopriv = presence.find("dm:device/gp:geopriv", ns)
    circle = geopriv.find("gp:location-info/gs:Circle", ns)
    assert circle.get("srsName") == "urn:ogc:def:crs:EPSG::4326"
    lat, lon = map(float, circle.find("gml:pos", ns).text.split())
    assert (lat, lon) == (25.0339, 121.5645)
    radius = circle.find("gs:radius", ns)
    assert radius.get("uom") == "urn:ogc:def:uom:EPSG::9001" and float(radius.text) == 12.5
    assert geopriv.find("gp:method", ns).text == "GPS"
    assert geopriv.find("gp:provided-by", ns) is not None and len(geopriv.find("gp:provided-by", ns)) == 1
    assert geopriv.find("gp:usage-rules", ns) is not None
    assert datetime.fromisoformat(presence.find("dm:device/dm:timestamp", ns).text) == NOW


def test_unknown_accuracy_is_a_wide_circle_not_a_precise_one():
    text = eido.pidf_lo(facts(accuracy_m=None), provider="guardian.example")
    assert f">{eido.UNKNOWN_ACCURACY_M!r}<" in text
