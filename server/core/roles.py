"""Which process serves what: `all` (one process, the default), `phones` or `alerts`.

The alert path runs in a process of its own so that an SOS, the consoles and the watchers
never wait behind the ping stream (DESIGN rule 3). The split is by path, and this list is
the one the reverse proxy routes by (`ops/nginx.conf.template`, kept equal by a test):
every path under one of `ALERT_PREFIXES` belongs to the alerts process, everything else
(the phone socket, pings, trackers' endpoints, the everyday phone API, exports) to the
phones processes.
"""

from typing import Literal

from fastapi import APIRouter

Role = Literal["all", "phones", "alerts"]
ROLES: tuple[Role, ...] = ("all", "phones", "alerts")

# Path prefixes of the alerts process: the SOS over HTTP, the console's socket, API, page and
# assets, the officers' reports (the push channel's positions), the watchers' socket and page.
ALERT_PREFIXES = ("/v1/sos", "/v1/console", "/console", "/v1/officer/", "/v1/share/", "/share/")


def is_alerts_path(path: str) -> bool:
    """True when the alerts process serves `path` (a route's template or a request's path)."""
    return path.startswith(ALERT_PREFIXES)


def serves(role: Role, path: str) -> bool:
    """Whether a process of `role` mounts the route at `path`. `/healthz` is every role's."""
    if role == "all" or path == "/healthz":
        return True
    return is_alerts_path(path) == (role == "alerts")


def runs_alert_work(role: Role) -> bool:
    """The outbox workers, the sweepers (escalation, trips' timers, contacts' pushes), retention."""
    return role in ("all", "alerts")


def runs_ingest(role: Role) -> bool:
    return role in ("all", "phones")


def share_of(router: APIRouter, role: Role) -> APIRouter:
    """The routes of `router` that a process of `role` mounts: a route of the other role is not
    this process's (404), as the proxy would never send it here."""
    if role == "all":
        return router
    share = APIRouter()
    share.routes.extend(route for route in router.routes if serves(role, route.path))
    return share
