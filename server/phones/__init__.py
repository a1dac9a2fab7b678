"""The phone's way in: its socket, the per-device ledger of acks, the intake that judges pings,
and the group-committed ingest (DESIGN rules 1 and 2). `POST /v1/pings` is the same path over HTTP.
"""
