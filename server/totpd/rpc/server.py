"""gRPC server bootstrap: `create_server` builds and binds, `serve` runs until a signal.

Kept apart so tests bind port 0 on loopback and drive a real server without
signals or a ready file.
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from totpd import thread_cpus
from totpd.config import ConfigError, Settings, parse_listen_address
from totpd.rpc.admission import Admission, AdmissionPolicy
from totpd.rpc.callers import (
    Access,
    Callers,
    DeniedHook,
    ignore_denial,
    load_access,
    warn_if_anonymous,
)
from totpd.rpc.drain import DrainingHealthServicer, StopSignals, drain_and_stop
from totpd.rpc.health_on_loop import LoopHealthServicer
from totpd.rpc.health_probe import StoreHealthProbe
from totpd.rpc.interceptors import CallInterceptor
from totpd.rpc.loop_server import LoopServer
from totpd.rpc.reflection import enable_reflection
from totpd.rpc.servicer import TotpServicer
from totpd.rpc.tls import (
    TlsMaterial,
    load_tls,
    server_credentials,
    tls_log_fields,
    warn_if_plaintext_beyond_loopback,
)
from totpd.service import lanes
from totpd.service.mfa import MfaService
from totpd.store.database import POOL_OVERFLOW, POOL_SIZE
from totpd.v1 import totp_service_pb2, totp_service_pb2_grpc

SERVICE_NAME = totp_service_pb2.DESCRIPTOR.services_by_name["TotpService"].full_name
_log = logging.getLogger("totpd.server")
Interceptor: TypeAlias = "grpc.aio.ServerInterceptor[Any, Any]"
# Connections kept free for background work (health probe, checkpoints, purge).
_BACKGROUND_CONNECTIONS = 4


class ServerError(Exception):
    """The server could not start (for example, the address is in use)."""


def create_server(
    settings: Settings,
    service: MfaService,
    *,
    health_servicer: health.HealthServicer | None = None,
    tls: TlsMaterial | None = None,
    share_port: bool = False,
    access: Access | None = None,
    on_denied: DeniedHook = ignore_denial,
    interpreter_cpu: int | None = None,
) -> tuple[LoopServer, int]:
    """Build a server with TotpService, health and reflection, bound but not started.

    Returns the server and the bound port (the real one when the settings ask for 0).
    Pass `health_servicer` to flip health later (shutdown); otherwise a fresh one is used.
    Every TotpService call passes admission by cost (`totpd.rpc.admission`).
    With `tls_cert_file` and `tls_key_file` set the port speaks TLS only, and with
    `tls_client_ca_file` too it requires a client certificate signed by that CA (mTLS);
    otherwise it is plaintext. `tls` is what `load_tls` read from those files at
    startup; without it they are read here.
    `share_port` lets the workers of `totpd serve --processes N` listen on one
    port (SO_REUSEPORT); otherwise a second server cannot bind it.
    `access` is who may call (`load_access`; read here without it); every
    TotpService call runs as its caller, and `on_denied` hears of each refusal.
    `interpreter_cpu`: the CPU its event loop and round threads run on once it
    started (totpd/thread_cpus.py); None leaves them to the kernel.
    """
    try:
        credentials = server_credentials(settings, tls if tls is not None else load_tls(settings))
        access = access if access is not None else load_access(settings)
    except ConfigError as error:
        raise ServerError(str(error)) from None
    workers = worker_threads(settings)
    server = grpc_server(
        settings,
        interceptors(settings, access, workers, on_denied),
        workers,
        share_port=share_port,
        interpreter_cpu=interpreter_cpu,
    )
    _add_services(server, service, health_servicer or DrainingHealthServicer())
    return server, _bind(server, settings.listen_address, credentials)


def interceptors(
    settings: Settings,
    access: Access,
    workers: Executor | None = None,
    on_denied: DeniedHook = ignore_denial,
) -> list[Interceptor]:
    """Every call's interceptors: one, which does each concern in turn
    (`CallInterceptor`): the access line and the metrics see the status the error
    mapping set; the error mapping maps what the inner steps raise: a refused
    caller, a deadline already passed, an admission refusal, the handler's errors.
    Callers first: a refused call costs nothing else."""
    return [
        CallInterceptor(
            Callers(access, on_denied),
            settings.max_database_wait_seconds,
            admission_policy(settings),
            workers,
        )
    ]


def worker_threads(settings: Settings) -> ThreadPoolExecutor:
    """The threads that run every handler but Verify's (rpc/loop_server.py)."""
    return ThreadPoolExecutor(
        max_workers=settings.max_workers,
        thread_name_prefix="totpd-rpc",
        initializer=thread_cpus.use_process_cpus,
    )


def grpc_server(
    settings: Settings,
    interceptors: list[Interceptor],
    workers: ThreadPoolExecutor | None = None,
    *,
    share_port: bool = False,
    interpreter_cpu: int | None = None,
) -> LoopServer:
    """A grpc server with totpd's worker threads, limits and channel options and no
    services: `create_server`'s, and the benchmarks' no-op floor on the same settings.
    `interpreter_cpu`: its loop's CPU once started (LoopServer)."""
    return LoopServer(
        workers=workers or worker_threads(settings),
        interceptors=interceptors,
        options=server_options(settings, share_port),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        interpreter_cpu=interpreter_cpu,
    )


def interpreter_cpu(settings: Settings, worker_index: int = 0) -> int | None:
    """The CPU of a serving process's event loop and round threads (`pin_interpreter`):
    each worker of `--processes N` on its own, as far as there are CPUs; None: any."""
    return thread_cpus.interpreter_cpu(worker_index) if settings.pin_interpreter else None


def server_options(settings: Settings, share_port: bool = False) -> list[tuple[str, int]]:
    """The server's channel options: message size limits and port sharing (also the
    benchmarks' grpc.aio probe's, benchmarks/service/loop_probe.py)."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        # Responses are not capped: a BatchVerify response is several times its
        # request and is sent only after its rounds were written, so refusing to
        # send it would lose verdicts that were already counted. Its size is
        # bounded by max_batch_items (about 130 bytes an item at most).
        ("grpc.max_send_message_length", -1),
        # Off unless asked: otherwise a second server could bind the same port on Linux.
        ("grpc.so_reuseport", 1 if share_port else 0),
    ]


def _add_services(
    server: LoopServer, service: MfaService, health_servicer: health.HealthServicer
) -> None:
    """TotpService, health (SERVING) and reflection of both."""
    totp_service_pb2_grpc.add_TotpServiceServicer_to_server(TotpServicer(service), server)
    health_pb2_grpc.add_HealthServicer_to_server(LoopHealthServicer(health_servicer), server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    enable_reflection(server, (SERVICE_NAME, health.SERVICE_NAME))


def _bind(server: LoopServer, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Bind the listening port (plaintext or TLS); the bound port number."""
    parse_listen_address(address)  # a clear error before grpc's terse one
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as error:
        raise ServerError(f"cannot listen on {address}: {error}{_BIND_HINT}") from None
    if port == 0:
        raise ServerError(f"cannot listen on {address}{_BIND_HINT}")
    return port


def start_health_probe(
    settings: Settings, service: MfaService, health_servicer: health.HealthServicer
) -> StoreHealthProbe:
    """Turn health NOT_SERVING while the store is unreachable (rpc/health_probe.py).

    Stop it when the server stops.
    """
    return StoreHealthProbe(
        service.ping,
        health_servicer,
        ("", SERVICE_NAME),
        interval=settings.health_probe_interval_seconds,
        timeout=settings.health_probe_timeout_seconds,
    ).start()


def admission_policy(settings: Settings) -> AdmissionPolicy:
    """Items in flight up to `max_items_in_flight`; calls in flight up to the
    database connections they can get without waiting. Each call holds one
    worker thread and at most one connection at a time, and the process's batch
    helper lanes one each (service/lanes.py), so the second bound only matters
    when `max_workers` exceeds the pool."""
    admission = Admission(
        settings.max_items_in_flight,
        max_calls=POOL_SIZE + POOL_OVERFLOW - _BACKGROUND_CONNECTIONS - lanes.HELPERS,
    )
    return AdmissionPolicy(admission, settings.largest_batch_items)


_BIND_HINT = " (is the port in use by another process? choose another with --listen HOST:PORT)"


def bound_address(listen_address: str, port: int) -> str:
    host, _ = parse_listen_address(listen_address)
    return f"{host}:{port}"


def write_ready_file(path: Path, address: str) -> None:
    """Write HOST:PORT atomically: a reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(address)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def tune_garbage_collector() -> None:
    """Keep the collector off the request path.

    A large BatchVerify allocates many short-lived objects; with the default
    thresholds the cyclic collector ran several times per call, mostly
    re-scanning the long-lived objects of startup. Freezing those and collecting
    the young generation less often takes it off the path (benchmarks/NOTES.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def serve(
    settings: Settings,
    service: MfaService,
    ready_file: Path | None = None,
    *,
    tls: TlsMaterial | None = None,
    share_port: bool = False,
    access: Access | None = None,
    on_denied: DeniedHook = ignore_denial,
    interpreter_cpu: int | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT, then drain and stop (`totpd.rpc.drain`); returns 0.

    `tls`, `share_port`, `access`, `on_denied` and `interpreter_cpu` as for `create_server`.
    """
    health_servicer = DrainingHealthServicer()
    server, port = create_server(
        settings,
        service,
        health_servicer=health_servicer,
        tls=tls,
        share_port=share_port,
        access=access,
        on_denied=on_denied,
        interpreter_cpu=interpreter_cpu,
    )
    tune_garbage_collector()
    with StopSignals().installed() as signals:
        server.start()
        probe = start_health_probe(settings, service, health_servicer)
        address = bound_address(settings.listen_address, port)
        _log.info(
            "serving",
            extra={
                "address": address,
                "workers": settings.max_workers,
                # Database-dependent by default ("auto"): say which it is.
                "coalesce_verify": settings.coalesces_verify,
                # "": the loop and round threads on any CPU (off, or refused).
                "interpreter_cpu": "" if server.pinned_cpu is None else server.pinned_cpu,
                "callers_file": str(settings.callers_file or ""),
                **tls_log_fields(settings),
            },
        )
        warn_if_plaintext_beyond_loopback(settings, address)
        warn_if_anonymous(settings, address)
        if ready_file is not None:
            write_ready_file(ready_file, address)
        try:
            signals.wait(1)
        finally:
            # Before the drain: health stays NOT_SERVING from here on.
            probe.stop()
        drain_and_stop(
            server,
            health_servicer,
            signals,
            drain_seconds=settings.drain_seconds,
            grace_seconds=settings.shutdown_grace_seconds,
        )
    _log.info("stopped")
    return 0
