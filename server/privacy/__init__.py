"""The user's own data: the export of everything held about them (`GET /v1/me/export`) and the
erasure of their account (`DELETE /v1/me`), alerts kept only as the law-enforcement record.

Public surface: `routes.router`; `export.archive` and `erasure.erase` / `erasure.forget_live`.
"""
