"""The phone's way in: its socket, the per-device ledger of acks, the intake that judges pings,
and the group-committed ingest (DESIGN rules 1 and 2). `POST /v1/pings` is the same path over HTTP
(`pings.submit`), and so are the tracker apps of phones without our app: OwnTracks
(`owntracks`) and Traccar Client over the OsmAnd protocol (`osmand`, `osmandjson`), whose
fixes `fixes` makes the wire's.
"""
