"""Metrics and traces: what an operator watches (a bottom layer, like logs).

`metrics` holds the Prometheus metrics and the cheap hooks the other layers
call; `listener` serves them over HTTP, across processes too; `tracing` is
OpenTelemetry, optional (the `tracing` extra) and off unless configured. No
module here imports grpc, SQLAlchemy or another totpd layer: the rpc, service
and store layers call in, never the other way.
"""
