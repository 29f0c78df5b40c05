"""The metrics' own HTTP listener (`metrics_address`), for one process or for a
supervisor serving its workers' metrics (telemetry/metrics.py has the contract).

Apart from the gRPC port on purpose: Prometheus scrapes plain HTTP, and a
scrape must not queue behind verification calls or count against admission.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

# Set (by the supervisor, in the workers' environment) to a fresh directory
# shared by the processes of one server: prometheus_client's multiprocess mode.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
# "supervisor": another process serves this one's metrics; start no listener.
LISTENER_ENV: Final = "TOTPD_METRICS_LISTENER"

_log = logging.getLogger("totpd.telemetry")


class MetricsListener:
    """A running listener; `port` is the bound one (useful with port 0)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port: int = server.server_port

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def parse_address(address: str) -> tuple[str, int]:
    """Split "HOST:PORT" ("[::1]:9464" for IPv6); port 0 asks for a free port."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"metrics_address must be HOST:PORT (or empty for none), got {address!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def start_metrics_listener(address: str) -> MetricsListener:
    """Serve /metrics on `address` in a daemon thread; OSError if it cannot bind.

    With `PROMETHEUS_MULTIPROC_DIR` set, it serves the sum over every process
    that writes to that directory (`MultiProcessCollector`), else this
    process's default registry. Logs the bound address ("metrics listening").
    """
    host, port = parse_address(address)
    server, thread = start_http_server(port, host, registry=_registry())
    thread.name = "totpd-metrics"
    listener = MetricsListener(server, thread, host)
    _log.info(
        "metrics listening",
        extra={"address": listener.address, "multiprocess": bool(os.environ.get(MULTIPROC_ENV))},
    )
    return listener


def _registry() -> CollectorRegistry:
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def worker_exited(pid: int) -> None:
    """A worker died: drop its live gauges from the sums (multiprocess mode only)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
