"""Where users have been: the ping history in PostgreSQL (partitioned by day: `partitions`), the hot
state in Redis (last location, geo index), and the user's own exports (GeoJSON, GPX).
"""
