"""Wire shape for BatchVerify: per-item messages (proto/ today) against columnar fields
(a throwaway .proto, `COLUMNAR_PROTO`, compiled into a temp dir; proto/ is untouched).

The timings: benchmarks/README.md, "Wire shape".
"""

from __future__ import annotations

import importlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.service.fixtures import ROOT
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb

COLUMNAR_PROTO = """
syntax = "proto3";
package totpd.bench;
import "totpd/v1/errors.proto";
import "totpd/v1/factor.proto";

message ColumnarBatchVerifyRequest {
  repeated string account_ids = 1;
  repeated string codes = 2;
  repeated string factor_ids = 3;
}
message ItemErrorAt {
  uint32 index = 1;
  totpd.v1.ItemError error = 2;
}
message ColumnarBatchVerifyResponse {
  repeated totpd.v1.VerifyResult results = 1;
  repeated string factor_ids = 2;
  repeated sint32 step_offsets = 3;
  repeated uint32 attempts_left = 4;
  repeated uint32 retry_after_seconds = 5;
  repeated ItemErrorAt errors = 6;
}
"""


def compile_columnar(directory: Path) -> ModuleType:
    """Compile the throwaway proto with grpcio-tools and import it."""
    source = directory / "totpd_bench_columnar.proto"
    source.write_text(COLUMNAR_PROTO)
    from grpc_tools import protoc

    include = Path(protoc.__file__).parent / "_proto"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{directory}",
            f"-I{ROOT / 'proto'}",
            f"-I{include}",
            f"--python_out={directory}",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"protoc failed: {done.stderr}")
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module("totpd_bench_columnar_pb2")
    finally:
        sys.path.remove(str(directory))


def _median(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(n: int = 10_000, repeat: int = 7) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="totpd-wire-") as directory:
        columnar = compile_columnar(Path(directory))
        return _measure(columnar, n, repeat)


@dataclass(frozen=True)
class _Batch:
    """The items both shapes carry: n accounts, codes and factor ids."""

    accounts: list[str]
    codes: list[str]
    factor_ids: list[str]

    @classmethod
    def of(cls, n: int) -> _Batch:
        return cls(
            accounts=[f"bench-{i:07d}" for i in range(n)],
            codes=[f"{(i * 7919) % 1_000_000:06d}" for i in range(n)],
            factor_ids=[str(uuid.uuid4()) for _ in range(n)],
        )


def _measure(col: ModuleType, n: int, repeat: int) -> dict[str, Any]:
    batch = _Batch.of(n)
    per_item = _per_item(batch, repeat)
    columnar = _columnar(col, batch, repeat)
    from google.protobuf.internal import api_implementation

    return {
        "items": n,
        "protobuf_backend": api_implementation.Type(),
        "per_item": per_item,
        "columnar": columnar,
        "server_side_ratio": (per_item["server_parse_s"] + per_item["server_respond_s"])
        / (columnar["server_parse_s"] + columnar["server_respond_s"]),
    }


def _per_item(batch: _Batch, repeat: int) -> dict[str, float]:
    """The proto today: one message per item."""
    valid = factor_pb2.VERIFY_RESULT_VALID

    def client_build() -> bytes:
        pairs = zip(batch.accounts, batch.codes, strict=True)
        request = pb.BatchVerifyRequest(
            items=[pb.BatchVerifyItem(account_id=a, code=c) for a, c in pairs]
        )
        return request.SerializeToString()

    request_bytes = client_build()

    def server_parse() -> object:
        request = pb.BatchVerifyRequest.FromString(request_bytes)
        return [(i.account_id, i.code, i.factor_id) for i in request.items]

    def server_respond() -> bytes:
        # As the servicer does it: one VerifyOutcome per item, copied into its slot.
        response = pb.BatchVerifyResponse()
        for factor_id in batch.factor_ids:
            slot = response.results.add()
            slot.outcome.CopyFrom(
                factor_pb2.VerifyOutcome(
                    result=valid, factor_id=factor_id, step_offset=0, attempts_left=10
                )
            )
        return response.SerializeToString()

    def server_respond_in_place() -> bytes:
        # Without the temporary message: set the fields in place.
        response = pb.BatchVerifyResponse()
        for factor_id in batch.factor_ids:
            outcome = response.results.add().outcome
            outcome.result = valid
            outcome.factor_id = factor_id
            outcome.attempts_left = 10
        return response.SerializeToString()

    response_bytes = server_respond()

    def client_read() -> object:
        response = pb.BatchVerifyResponse.FromString(response_bytes)
        return [
            (r.outcome.result, r.outcome.factor_id, r.outcome.step_offset, r.outcome.attempts_left)
            for r in response.results
        ]

    timed = _medians(repeat, server_parse, server_respond, client_build, client_read)
    timed["server_respond_in_place_s"] = _median(server_respond_in_place, repeat)
    return timed | {"request_bytes": len(request_bytes), "response_bytes": len(response_bytes)}


def _columnar(col: ModuleType, batch: _Batch, repeat: int) -> dict[str, float]:
    """The throwaway proto: one repeated field per column."""
    n = len(batch.accounts)
    zeros = [0] * n
    tens = [10] * n
    results = [factor_pb2.VERIFY_RESULT_VALID] * n

    def client_build() -> bytes:
        request = col.ColumnarBatchVerifyRequest(account_ids=batch.accounts, codes=batch.codes)
        return bytes(request.SerializeToString())

    request_bytes = client_build()

    def server_parse() -> object:
        request = col.ColumnarBatchVerifyRequest.FromString(request_bytes)
        return (list(request.account_ids), list(request.codes), list(request.factor_ids))

    def server_respond() -> bytes:
        response = col.ColumnarBatchVerifyResponse(
            results=results,
            factor_ids=batch.factor_ids,
            step_offsets=zeros,
            attempts_left=tens,
            retry_after_seconds=zeros,
        )
        return bytes(response.SerializeToString())

    response_bytes = server_respond()

    def client_read() -> object:
        response = col.ColumnarBatchVerifyResponse.FromString(response_bytes)
        return (
            list(response.results),
            list(response.factor_ids),
            list(response.step_offsets),
            list(response.attempts_left),
        )

    timed = _medians(repeat, server_parse, server_respond, client_build, client_read)
    return timed | {"request_bytes": len(request_bytes), "response_bytes": len(response_bytes)}


def _medians(
    repeat: int,
    server_parse: Callable[[], object],
    server_respond: Callable[[], object],
    client_build: Callable[[], object],
    client_read: Callable[[], object],
) -> dict[str, float]:
    """The four timings the module docstring names, for one shape."""
    return {
        "server_parse_s": _median(server_parse, repeat),
        "server_respond_s": _median(server_respond, repeat),
        "client_build_s": _median(client_build, repeat),
        "client_read_s": _median(client_read, repeat),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
