"""An alert as a NENA EIDO JSON object (NENA-STA-021) with its location as PIDF-LO.

The location is a PIDF-LO presence document (RFC 4119) whose shape is an RFC 5491
Circle: the fix as `gml:pos` ("lat lon", EPSG 4326) and its accuracy as
`gs:radius` in metres (EPSG 9001), with `method`, `provided-by` and a timestamp.
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
    if notes:
        document["notesComponent"] = [
            {**prologue(f"urn:emergency:uid:notesid:{facts.alert_id}-{index}:{agency_id}"),
             "notesActionComments": text}
            for index, text in enumerate(notes)
        ]
        incident["notesReference"] = [{"$ref": note["$id"]} for note in document["notesComponent"]]
    return document
