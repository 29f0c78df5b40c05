"""A loopback port for a program that must be told its port before it starts
(PostgreSQL, Prometheus, a metrics listener).

The port was free when picked; another socket may take it before the program
binds it. A program that can report the port it bound (`totpd serve --listen
127.0.0.1:0 --ready-file`) should bind port 0 instead.
"""

from __future__ import annotations

import socket


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
