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
"""

from __future__ import annotations

from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI

__all__ = ["server_config"]


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
