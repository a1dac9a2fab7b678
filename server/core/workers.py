"""N processes serving one port: the phones role's `--workers N`.

The parent binds one listening socket per worker, each with SO_REUSEPORT, so the kernel
spreads new connections evenly over them (one shared socket would wake every worker per
connection and give most to whichever is least busy at that instant). Then it forks: each
child serves its socket with its own event loop, ingest, ledgers and sockets map, built by
its own lifespan. Forking rather than uvicorn's `workers=` (which spawns and pickles what
it runs): `run_uvicorn` hands uvicorn a protocol class built at run time (`core.gate`),
which a spawned process cannot unpickle, and a fork also shares the frozen heap.

The parent keeps the sockets: a worker that dies is forked again on the same socket, and
connections that arrived meanwhile wait in its backlog rather than being reset. SIGTERM or
SIGINT to the parent stops every worker (uvicorn's graceful shutdown) and then the parent.
"""

import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

RESPAWN_DELAY_S = 1.0
BACKLOG = 4096
PR_SET_PDEATHSIG = 1


def reuseport_socket(*, host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def die_with_parent() -> None:
    """SIGTERM this process when the parent dies, however (a SIGKILL too): an orphaned worker
    would keep serving the port with nobody to stop it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's SIGTERM is the only stop
        pass


def serve_forked(serve: Callable[[socket.socket], None], *, host: str, port: int, count: int) -> int:
    """Run `serve(sock)` in `count` forked processes, one socket each, until told to stop.
    Returns the exit status for the parent."""
    sockets = [reuseport_socket(host=host, port=port) for _ in range(count)]
    children: dict[int, int] = {}  # pid → worker index
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def fork(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            for other, sock in enumerate(sockets):
                if other != index:
                    sock.close()  # the others' backlogs are theirs (and the parent's, for a respawn)
            code = 0
            try:
                serve(sockets[index])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                os._exit(code)
        children[pid] = index

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(count):
        fork(index)
    log.info("%d workers serving port %d", count, port)
    while children:
        pid, status = os.wait()
        index = children.pop(pid, None)
        if index is None or stopping:
            continue
        log.error("worker %d exited (status %d); starting it again", index, os.waitstatus_to_exitcode(status))
        time.sleep(RESPAWN_DELAY_S)
        if not stopping:
            fork(index)
    for sock in sockets:
        sock.close()
    return 0
