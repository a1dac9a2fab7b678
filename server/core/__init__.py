"""Plumbing below every domain: settings, the database engine and schema, migrations, Redis keys,
owned tasks, the wire codec, the refusal tree and its one mapping to HTTP statuses and close codes.
"""
