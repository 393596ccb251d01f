"""Exposing the metrics: :func:`metrics_text` for any ``/metrics`` handler, and
:func:`serve_metrics`, a small HTTP server of its own (``prometheus_client``'s WSGI app on
a background daemon thread, loopback by default). Both honour the multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``) when no registry is given."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import make_wsgi_app as _make_wsgi_app

__all__ = [
    "CONTENT_TYPE",
    "MetricsServer",
    "metrics_text",
    "multiprocess_dir",
    "scrape_registry",
    "serve_metrics",
]

CONTENT_TYPE: str = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of :func:`metrics_text` (text format 0.0.4)."""


def multiprocess_dir() -> str | None:
    """The multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``), or ``None`` outside
    multiprocess mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def scrape_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """The registry to expose: ``registry`` when given; else, in multiprocess mode, a fresh
    registry with a ``MultiProcessCollector`` (values summed over every process); else
    ``prometheus_client.REGISTRY``."""
    if registry is not None:
        return registry
    path = multiprocess_dir()
    if path:
        from prometheus_client import multiprocess

        collecting = CollectorRegistry()
        multiprocess.MultiProcessCollector(collecting, path=path)  # type: ignore[no-untyped-call]
        return collecting
    return REGISTRY


def metrics_text(registry: CollectorRegistry | None = None) -> str:
    """The metrics of ``registry`` (see :func:`scrape_registry` for the default) in the
    Prometheus text exposition format 0.0.4, for a ``/metrics`` handler."""
    return generate_latest(scrape_registry(registry)).decode("utf-8")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup ``HTTPServer`` does."""
        import socketserver

        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet on client disconnects."""


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No per-scrape logging."""


class MetricsServer:
    """A running :func:`serve_metrics` server: :attr:`url`, :attr:`port`, :meth:`stop`
    (also a context manager)."""

    def __init__(self, httpd: _Server, thread: threading.Thread, host: str) -> None:
        self._httpd = httpd
        self._thread: threading.Thread | None = thread
        self.host = host
        #: The bound port (the chosen one when 0 was asked for).
        self.port = int(httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url} {'running' if self.running else 'stopped'}>"


def serve_metrics(
    port: int,
    host: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
    *,
    allow_non_loopback: bool = False,
) -> MetricsServer:
    """Serve ``registry`` (see :func:`scrape_registry` for the default) over HTTP on
    ``host:port`` from a daemon thread, with ``prometheus_client``'s WSGI app (any path;
    ``?name[]=...`` filters; gzip when asked). ``port=0`` picks a free port (see
    :attr:`MetricsServer.port`).

    The endpoint has no authentication, so a host that is not loopback (``0.0.0.0`` in a
    container, for instance) must be allowed explicitly with ``allow_non_loopback=True``.
    """
    if not allow_non_loopback and not _is_loopback(host):
        raise ValueError(
            f"refusing to serve metrics on non-loopback host {host!r}: the endpoint has no "
            "authentication; pass allow_non_loopback=True if the network is trusted"
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port={port!r}: expected an integer 0-65535")
    bare = host.strip("[]")
    server_class = _Server6 if ":" in bare else _Server
    app = _make_wsgi_app(scrape_registry(registry))
    httpd = make_server(bare, port, app, server_class, handler_class=_QuietHandler)
    assert isinstance(httpd, _Server)
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"chatcore-prometheus-{httpd.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return MetricsServer(httpd, thread, bare)
