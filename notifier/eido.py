"""An alert as a NENA EIDO JSON object (NENA-STA-021) with its location as PIDF-LO.

The location is a PIDF-LO presence document (RFC 4119) whose shape is an RFC 5491
Circle: the fix as `gml:pos` ("lat lon", EPSG 4326) and its accuracy as
`gs:radius` in metres (EPSG 9001), with `method`, `provided-by` and a timestamp.

An alert raised during a trip carries it: the vehicle (a taxi's plate, make and colour) as
EIDO's vehicle component (NIEM `nc:VehicleType`, the plate an identification of category
LPN), referenced from the incident, and the trip itself in a note.
"""

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

PIDF = "urn:ietf:params:xml:ns:pidf"
GEOPRIV = "urn:ietf:params:xml:ns:pidf:geopriv10"
DATA_MODEL = "urn:ietf:params:xml:ns:pidf:data-model"
GML = "http://www.opengis.net/gml"
GEOSHAPE = "http://www.opengis.net/pidflo/1.0"
PROVIDER = "urn:guardian:pidf:provided-by"
CRS_WGS84 = "urn:ogc:def:crs:EPSG::4326"
UOM_METRE = "urn:ogc:def:uom:EPSG::9001"
# A radius for a fix that reports no accuracy: large, so nobody trusts it more than it deserves.
UNKNOWN_ACCURACY_M = 1000.0

for prefix, namespace in (("", PIDF), ("gp", GEOPRIV), ("dm", DATA_MODEL), ("gml", GML), ("gs", GEOSHAPE),
                          ("gb", PROVIDER)):
    ET.register_namespace(prefix, namespace)

# EIDO registry values: incident status and location type.
STATUS = {"open": "Active", "acknowledged": "Dispatched", "resolved": "Closed", "cancelled": "Cancelled"}
# How the vehicle relates to the incident: the user rode in it when the alert was raised.
VEHICLE_RELATIONSHIP = "Involved"
# NIEM's kind of conveyance identification (scr:ConveyanceIdentificationCategoryCode): licence plate number.
LICENCE_PLATE = "LPN"
TRIP_KINDS = {"taxi": "Taxi ride", "hike": "Hike", "walk": "Walk"}


@dataclass(frozen=True, slots=True)
class TripFacts:
    trip_id: str
    kind: str  # taxi, hike, walk
    status: str
    started_at: datetime
    plate: str | None = None
    driver_name: str | None = None
    make: str | None = None
    colour: str | None = None
    destination: tuple[float, float] | None = None  # (lat, lon)
    eta: datetime | None = None
    expected_return: datetime | None = None
    planned_route_m: float | None = None

    @property
    def has_vehicle(self) -> bool:
        return any((self.plate, self.make, self.colour))


@dataclass(frozen=True, slots=True)
class Facts:
    alert_id: str
    status: str
    duress: bool
    opened_at: datetime
    updated_at: datetime
    user_id: str
    user_name: str
    user_phone: str
    precinct_id: str | None
    precinct_name: str | None
    lat: float | None
    lon: float | None
    accuracy_m: float | None
    fix_ts: datetime | None
    quality: str
    notes: tuple[str, ...] = ()
    trip: TripFacts | None = None


def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def pidf_lo(facts: Facts, *, provider: str) -> str:
    """The PIDF-LO document of the alert's location (callers check lat/lon are known)."""
    presence = ET.Element(f"{{{PIDF}}}presence", {"entity": f"pres:{facts.user_id}@{provider}"})
    device = ET.SubElement(presence, f"{{{DATA_MODEL}}}device", {"id": f"d{facts.user_id[:8]}"})
    geopriv = ET.SubElement(device, f"{{{GEOPRIV}}}geopriv")
    info = ET.SubElement(geopriv, f"{{{GEOPRIV}}}location-info")
    circle = ET.SubElement(info, f"{{{GEOSHAPE}}}Circle", {"srsName": CRS_WGS84})
    ET.SubElement(circle, f"{{{GML}}}pos").text = f"{facts.lat!r} {facts.lon!r}"
    radius = facts.accuracy_m if facts.accuracy_m is not None else UNKNOWN_ACCURACY_M
    ET.SubElement(circle, f"{{{GEOSHAPE}}}radius", {"uom": UOM_METRE}).text = repr(float(radius))
    rules = ET.SubElement(geopriv, f"{{{GEOPRIV}}}usage-rules")
    ET.SubElement(rules, f"{{{GEOPRIV}}}retransmission-allowed").text = "false"
    ET.SubElement(geopriv, f"{{{GEOPRIV}}}method").text = "GPS"
    provided = ET.SubElement(geopriv, f"{{{GEOPRIV}}}provided-by")
    ET.SubElement(provided, f"{{{PROVIDER}}}entity").text = provider
    ET.SubElement(device, f"{{{DATA_MODEL}}}deviceID").text = f"urn:uuid:{facts.user_id}"
    ET.SubElement(device, f"{{{DATA_MODEL}}}timestamp").text = _time(facts.fix_ts or facts.updated_at)
    return ET.tostring(presence, encoding="unicode", xml_declaration=True)


def trip_note(trip: TripFacts) -> str:
    """The trip in words, for the CAD operator: what, since when, who drives, where to."""
    said = [f"{TRIP_KINDS.get(trip.kind, trip.kind)} since {_time(trip.started_at)} (trip status {trip.status})"]
    if trip.plate:
        said.append(f"plate {trip.plate}")
    if trip.driver_name:
        said.append(f"driver {trip.driver_name}")
    vehicle = ", ".join(part for part in (trip.make, trip.colour) if part)
    if vehicle:
        said.append(f"vehicle {vehicle}")
    if trip.destination is not None:
        said.append(f"destination {trip.destination[0]:.5f}, {trip.destination[1]:.5f}")
    if trip.eta is not None:
        said.append(f"ETA {_time(trip.eta)}")
    if trip.expected_return is not None:
        said.append(f"expected back {_time(trip.expected_return)}")
    if trip.planned_route_m is not None:
        said.append(f"planned route {trip.planned_route_m / 1000:.1f} km")
    else:
        said.append("no planned route")
    return "Trip: " + "; ".join(said) + "."


def _vehicle(trip: TripFacts) -> dict:
    """NIEM's nc:VehicleType of the trip's vehicle: texts are {"value": ...} objects."""
    vehicle: dict = {}
    if trip.plate:
        vehicle["identification"] = [{"identificationId": [{"value": trip.plate}],
                                      "conveyanceCategoryCode": [{"simpleType": LICENCE_PLATE}]}]
    if trip.make:
        vehicle["makeName"] = [{"value": trip.make}]
    if trip.colour:
        vehicle["conveyanceColorPrimary"] = [{"value": trip.colour}]
    if trip.kind == "taxi":
        vehicle["vehicleUse"] = [{"value": "Taxi"}]
    return vehicle


def eido(facts: Facts, *, agency_id: str, issuing_element: str) -> dict:
    """The EIDO object (EmergencyIncidentDataObjectType) of the alert as it stands now."""
    updated = _time(facts.updated_at)
    incident_id = f"urn:emergency:uid:incidentid:{facts.alert_id}:{agency_id}"
    location_id = f"urn:emergency:uid:locationid:{facts.alert_id}:{agency_id}"
    person_id = f"urn:emergency:uid:personid:{facts.user_id}:{agency_id}"
    callback_id = f"urn:emergency:uid:callbackid:{facts.user_id}:{agency_id}"
    agency = {"$ref": agency_id}

    def prologue(component_id: str) -> dict:
        return {"$id": component_id, "lastUpdateTimeStamp": updated, "updatedByAgencyReference": agency}

    incident = {
        **prologue(incident_id),
        "incidentTypeCommonRegistryText": "Law Enforcement",
        "incidentTypeInternalText": "Personal safety SOS" + (" (duress)" if facts.duress else ""),
        "incidentStatusCommonRegistryText": [STATUS[facts.status]],
        "incidentStatusInternalText": [facts.status],
        "internalIncidentId": facts.alert_id,
        "personReference": [{"$ref": person_id}],
    }
    if facts.precinct_id is not None:
        incident["beatOrDispatchGroupText"] = facts.precinct_id
    document = {
        **prologue(incident_id),
        "eidoVersion": "1.0",
        "issuingElementIdentification": issuing_element,
        "incidentComponent": incident,
        "agencyComponent": [{
            **prologue(agency_id),
            "agencyRoleDescriptionRegistryText": ["Dispatching"],
            "agencyType": ["police"],
            "incidentOwningAgencyIndicator": True,
        }],
        "personComponent": [{
            **prologue(person_id),
            "personIncidentRoleRegistryText": ["Caller"],
        }],
        "callbackComponent": [{
            **prologue(callback_id),
            "callBackInformationUri": [f"tel:{''.join(ch for ch in facts.user_phone if ch in '+0123456789')}"],
        }],
    }
    if facts.lat is not None and facts.lon is not None:
        incident["locationReference"] = [{"$ref": location_id}]
        document["personComponent"][0]["locationReference"] = [{"$ref": location_id}]
        document["locationComponent"] = [{
            **prologue(location_id),
            "locationTypeDescriptionRegistryText": "Incident",
            "locationByValue": pidf_lo(facts, provider=issuing_element),
            "locationDescriptionText": f"quality: {facts.quality}",
        }]
    notes = [*facts.notes]
    if facts.duress:
        notes.insert(0, "DURESS: the user cancelled with the duress PIN; the phone was told the alert ended.")
    components = [{**prologue(f"urn:emergency:uid:notesid:{facts.alert_id}-{index}:{agency_id}"),
                   "notesActionComments": text} for index, text in enumerate(notes)]
    if facts.trip is not None:
        trip_note_id = f"urn:emergency:uid:notesid:{facts.alert_id}-trip:{agency_id}"
        components.insert(1 if facts.duress else 0,
                          {**prologue(trip_note_id), "notesActionComments": trip_note(facts.trip)})
        if facts.trip.has_vehicle:
            vehicle_id = f"urn:emergency:uid:vehicleid:{facts.trip.trip_id}:{agency_id}"
            component = {
                **prologue(vehicle_id),
                "vehicleRelationshipType": [VEHICLE_RELATIONSHIP],
                "vehicleRelationshipTimeStamp": _time(facts.trip.started_at),
                "ncVehicleComponent": _vehicle(facts.trip),
                "notesReference": [{"$ref": trip_note_id}],
            }
            if facts.trip.eta is not None:
                component["eta"] = _time(facts.trip.eta)
            document["vehicleComponent"] = [component]
            incident["vehicleReference"] = [{"$ref": vehicle_id}]
    if components:
        document["notesComponent"] = components
        incident["notesReference"] = [{"$ref": note["$id"]} for note in components]
    return document
