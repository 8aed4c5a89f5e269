"""How the archive's app is served: the uvicorn settings, forwarded headers included.

The bad-credential limit counts per client address (see
:mod:`obsflow.archive.api.deps`), so the address must be the real one.
uvicorn by default believes ``X-Forwarded-For`` and ``X-Forwarded-Proto``
from 127.0.0.1, which would let any local client (or a client of a proxy
that passes the header on) choose its own address.  :func:`server_config`
turns forwarded headers off unless the site names its reverse proxies in
``server.trusted_proxies``; then they are believed from those addresses
only, and the client is the last address in ``X-Forwarded-For`` that is not
a trusted proxy.

:func:`listening_socket` binds the port before uvicorn starts, so a port
already in use is one clear error naming the address and the option to change
it (uvicorn alone logs the errno and exits).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI

from obsflow.exceptions import ConfigError

__all__ = ["listening_socket", "server_config"]


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` for uvicorn to serve on.

    Raises
    ------
    ConfigError
        The address is taken (another ``obsflow serve``, or any other server)
        or cannot be bound; the message names the address and ``--port``.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"server host {host!r}: cannot resolve it ({exc.strerror})") from exc
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{host}:{port} is already in use (another obsflow serve?): "
                              f"choose a free port with --port N, or set [server] port "
                              f"in the site's configuration") from exc
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def server_config(app: FastAPI, host: str, port: int, trusted_proxies: Sequence[str] = (), *,
                  log_level: str = "info", access_log: bool = True) -> uvicorn.Config:
    """The uvicorn configuration that serves ``app`` on ``host``:``port``.

    Parameters
    ----------
    app : FastAPI
        The archive's app (:func:`obsflow.archive.api.create_app`).
    host, port : str, int
        Interface and TCP port to listen on.
    trusted_proxies : sequence of str
        IP addresses or networks (CIDR) of reverse proxies whose
        ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed; empty (the
        default): forwarded headers are ignored and the client is the TCP peer.
    log_level, access_log
        uvicorn's logging.
    """
    return uvicorn.Config(app, host=host, port=port, log_level=log_level,
                          access_log=access_log,
                          proxy_headers=bool(trusted_proxies),
                          forwarded_allow_ips=list(trusted_proxies))
