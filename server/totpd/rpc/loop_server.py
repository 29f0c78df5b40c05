"""The grpc.aio server on an event loop of its own thread, behind the blocking
surface of grpc's threaded server.

Why an event loop: with a thread per call, every unary call pays thread
hand-offs that cost more than its own work (benchmarks/NOTES.md, "an event-loop
rpc layer"). On one loop a call is a coroutine; `Verify` waits for a shared
round without a thread of its own, and every other method runs unchanged on
the `max_workers` threads grpc.aio hands sync handlers to.

Why the blocking surface: the CLI's main thread waits for signals, and tests
start and stop servers from plain threads. `start`, `stop` and the port
methods may be called from any thread but the loop's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from totpd import thread_cpus

T = TypeVar("T")


class LoopServer:
    """A grpc.aio server whose loop runs on a daemon thread until `stop` ends."""

    def __init__(
        self,
        *,
        workers: ThreadPoolExecutor,
        interceptors: Sequence[Any],
        options: Sequence[tuple[str, Any]],
        maximum_concurrent_rpcs: int | None,
        interpreter_cpu: int | None = None,
    ) -> None:
        """`interpreter_cpu`: the CPU the loop moves to once the server started,
        and the threads it starts with it (totpd/thread_cpus.py); None: any."""
        self._loop = asyncio.new_event_loop()
        self._interpreter_cpu = interpreter_cpu
        # The CPU the loop runs on once started: None until then, or if refused.
        self.pinned_cpu: int | None = None
        self._workers = workers
        self._stopped = threading.Event()
        self._stopping = False
        threading.Thread(target=self._serve_loop, name="totpd-loop", daemon=True).start()

        async def build() -> grpc.aio.Server:
            return grpc.aio.server(
                migration_thread_pool=workers,
                interceptors=interceptors,
                options=options,
                maximum_concurrent_rpcs=maximum_concurrent_rpcs,
            )

        self._server = self._on_loop(build())

    def _on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and wait for its result (from another thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # -- grpc.Server's surface ------------------------------------------------

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        # Called by the generated `add_*Servicer_to_server`; not in grpc's type stubs.
        server: Any = self._server
        server.add_registered_method_handlers(service, handlers)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, credentials)

    def start(self) -> None:
        self._on_loop(self._server.start())
        if self._interpreter_cpu is not None:
            # Only now: the threads grpc started for the server keep every CPU.
            if self._on_loop(_pinned(self._interpreter_cpu)):
                self.pinned_cpu = self._interpreter_cpu

    def stop(self, grace: float | None) -> threading.Event:
        """Refuse new calls; cancel the calls still running after `grace` seconds
        (at once with None). The event is set once the server and its loop ended."""
        if not self._stopping:
            self._stopping = True
            ended = asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop)
            ended.add_done_callback(lambda _: self._loop.call_soon_threadsafe(self._loop.stop))
        return self._stopped

    def _serve_loop(self) -> None:
        try:
            self._loop.run_forever()
        finally:
            # Closing drops the loop's pending handles (calls' deadline timers, which
            # reach the service): grpc.aio keeps a reference to every loop it served.
            self._loop.close()
            self._workers.shutdown(wait=False)
            self._stopped.set()


async def _pinned(cpu: int) -> bool:
    """On the loop: its thread moves to `cpu` (a coroutine, to run it there)."""
    return thread_cpus.pin_this_thread(cpu)
