"""The server's logging: Guardian's own loggers at the configured level, libraries at warnings.

No token, password, PIN, phone number or coordinate may reach a log line, at any level.
Guardian's own lines are written with that in mind (errors by type and SQLSTATE, users and
alerts by id), and a test runs the whole stack at DEBUG and scans every line for what it sent
(tests/test_logs.py). Libraries' debug and info lines are not written with it in mind:
websockets' debug lines quote frames (a `hello` carries a device token, a ping its
coordinates), uvicorn's info lines quote request paths (`/v1/share/{token}`), SQLAlchemy's
quote result rows, python-multipart's quote field data. So whatever level is configured,
a library speaks only from WARNING up.
"""

import logging

OWN_LOGGERS = ("server", "geo", "notifier")
LIBRARY_LEVEL = logging.WARNING
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str) -> None:
    """Log to stderr: Guardian's own loggers from `level` (a name such as "INFO" or "DEBUG"),
    every other logger from WARNING (or from `level`, if that is higher)."""
    own_level = logging.getLevelName(level.upper())
    if not isinstance(own_level, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.basicConfig(level=max(own_level, LIBRARY_LEVEL), format=FORMAT, force=True)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own_level)
    logging.getLogger(__name__).debug("Guardian's lines from %s, libraries' from %s", logging.getLevelName(own_level),
                                      logging.getLevelName(max(own_level, LIBRARY_LEVEL)))
