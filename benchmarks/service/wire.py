"""Wire shape for BatchVerify: per-item messages (proto/ today) against columnar fields.

The columnar alternative lives only in a throwaway .proto compiled into a temp
dir (proto/ is untouched):

    message ColumnarBatchVerifyRequest {
      repeated string account_ids = 1; repeated string codes = 2;
      repeated string factor_ids = 3;            // empty, or one per item
    }
    message ColumnarBatchVerifyResponse {
      repeated totpd.v1.VerifyResult results = 1; // packed enum
      repeated string factor_ids = 2;
      repeated sint32 step_offsets = 3;           // packed
      repeated uint32 attempts_left = 4;          // packed
      repeated uint32 retry_after_seconds = 5;    // packed
      repeated ItemErrorAt errors = 6;            // sparse: only failed items
    }

For each shape, with the installed protobuf runtime (upb), medians of:
  server_parse     request bytes -> message -> the three fields of every item in Python
  server_respond   every item's verdict -> response message -> bytes
  client_build     the three fields of every item -> request message -> bytes
  client_read      response bytes -> message -> every item's verdict fields in Python
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


def _measure(col: ModuleType, n: int, repeat: int) -> dict[str, Any]:
    accounts = [f"bench-{i:07d}" for i in range(n)]
    codes = [f"{(i * 7919) % 1_000_000:06d}" for i in range(n)]
    factor_ids = [str(uuid.uuid4()) for _ in range(n)]
    valid = factor_pb2.VERIFY_RESULT_VALID

    # -- per item (the proto today) --
    def item_client_build() -> bytes:
        request = pb.BatchVerifyRequest(
            items=[
                pb.BatchVerifyItem(account_id=a, code=c)
                for a, c in zip(accounts, codes, strict=True)
            ]
        )
        return request.SerializeToString()

    item_request = item_client_build()

    def item_server_parse() -> object:
        request = pb.BatchVerifyRequest.FromString(item_request)
        return [(i.account_id, i.code, i.factor_id) for i in request.items]

    def item_server_respond() -> bytes:
        # As the servicer does it: one VerifyOutcome per item, copied into its slot.
        response = pb.BatchVerifyResponse()
        for factor_id in factor_ids:
            slot = response.results.add()
            slot.outcome.CopyFrom(
                factor_pb2.VerifyOutcome(
                    result=valid, factor_id=factor_id, step_offset=0, attempts_left=10
                )
            )
        return response.SerializeToString()

    def item_server_respond_direct() -> bytes:
        # Without the temporary message: set the fields in place.
        response = pb.BatchVerifyResponse()
        for factor_id in factor_ids:
            outcome = response.results.add().outcome
            outcome.result = valid
            outcome.factor_id = factor_id
            outcome.attempts_left = 10
        return response.SerializeToString()

    item_response = item_server_respond()

    def item_client_read() -> object:
        response = pb.BatchVerifyResponse.FromString(item_response)
        return [
            (r.outcome.result, r.outcome.factor_id, r.outcome.step_offset, r.outcome.attempts_left)
            for r in response.results
        ]

    # -- columnar --
    def col_client_build() -> bytes:
        request = col.ColumnarBatchVerifyRequest(account_ids=accounts, codes=codes)
        return bytes(request.SerializeToString())

    col_request = col_client_build()

    def col_server_parse() -> object:
        request = col.ColumnarBatchVerifyRequest.FromString(col_request)
        return (list(request.account_ids), list(request.codes), list(request.factor_ids))

    zeros = [0] * n
    tens = [10] * n
    results = [valid] * n

    def col_server_respond() -> bytes:
        response = col.ColumnarBatchVerifyResponse(
            results=results,
            factor_ids=factor_ids,
            step_offsets=zeros,
            attempts_left=tens,
            retry_after_seconds=zeros,
        )
        return bytes(response.SerializeToString())

    col_response = col_server_respond()

    def col_client_read() -> object:
        response = col.ColumnarBatchVerifyResponse.FromString(col_response)
        return (
            list(response.results),
            list(response.factor_ids),
            list(response.step_offsets),
            list(response.attempts_left),
        )

    per_item = {
        "server_parse_s": _median(item_server_parse, repeat),
        "server_respond_s": _median(item_server_respond, repeat),
        "server_respond_in_place_s": _median(item_server_respond_direct, repeat),
        "client_build_s": _median(item_client_build, repeat),
        "client_read_s": _median(item_client_read, repeat),
        "request_bytes": len(item_request),
        "response_bytes": len(item_response),
    }
    columnar = {
        "server_parse_s": _median(col_server_parse, repeat),
        "server_respond_s": _median(col_server_respond, repeat),
        "client_build_s": _median(col_client_build, repeat),
        "client_read_s": _median(col_client_read, repeat),
        "request_bytes": len(col_request),
        "response_bytes": len(col_response),
    }
    from google.protobuf.internal import api_implementation

    return {
        "items": n,
        "protobuf_backend": api_implementation.Type(),
        "per_item": per_item,
        "columnar": columnar,
        "server_side_ratio": (per_item["server_parse_s"] + per_item["server_respond_s"])
        / (columnar["server_parse_s"] + columnar["server_respond_s"]),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
