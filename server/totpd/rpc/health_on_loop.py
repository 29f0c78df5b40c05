"""grpc's health service served on the event loop from a thread-side servicer.

The statuses live in grpc's own `health.HealthServicer` (or totpd's draining
one), set from any thread: the store probe, the drain, tests. This adapter
answers Check and Watch for it as coroutines, so a watching client holds no
worker thread (with a thread per stream, four watchers would stall a server
of four workers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


class LoopHealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Check and Watch of `statuses`, on the loop that serves them."""

    def __init__(self, statuses: health.HealthServicer) -> None:
        self._statuses = statuses

    async def Check(  # noqa: N802 (the method's name)
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        answer = _WatchContext(asyncio.get_running_loop())
        response: health_pb2.HealthCheckResponse = self._statuses.Check(request, cast(Any, answer))
        if answer.code is not None:  # an unknown service: NOT_FOUND
            await context.abort(answer.code, answer.details)
        return response

    async def Watch(  # noqa: N802 (the method's name)
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        loop = asyncio.get_running_loop()
        stream = _WatchContext(loop)
        context.add_done_callback(lambda _call: stream.end())
        self._statuses.Watch(request, cast(Any, stream), send_response_callback=stream.send)
        while True:
            response = await stream.updates.get()
            if response is None:  # the servicer ended the stream (the drain)
                if stream.code is not None:
                    context.set_code(stream.code)
                    context.set_details(stream.details)
                return
            yield response


class _WatchContext:
    """What the thread-side servicer sees of a call: where to send a status, how to
    end it, and the callbacks to run when it ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.updates: asyncio.Queue[health_pb2.HealthCheckResponse | None] = asyncio.Queue()
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self._on_end: list[Callable[[], Any]] = []

    def send(self, response: health_pb2.HealthCheckResponse | None) -> None:
        """From any thread (the servicer's `set`, under its lock)."""
        try:
            self._loop.call_soon_threadsafe(self.updates.put_nowait, response)
        except RuntimeError:  # the loop is closed: the server stopped
            pass

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def add_callback(self, callback: Callable[[], Any]) -> bool:
        self._on_end.append(callback)
        return True

    def end(self) -> None:
        """The call ended (on the loop): the servicer forgets the stream."""
        callbacks, self._on_end = self._on_end, []
        for callback in callbacks:
            callback()
