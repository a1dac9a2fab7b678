"""Pure rules about positions: validation, plausibility, distances. No I/O.

Imports only the standard library and shapely (a test keeps it so).
"""
