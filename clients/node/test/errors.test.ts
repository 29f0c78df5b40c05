// Decoding of google.rpc.Status details, without a server.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Metadata, status } from "@grpc/grpc-js";
import { ErrorReason, TotpdError } from "../src";

function richStatus(domain: string, reason: string, field: string): Buffer {
  const info = new BinaryWriter();
  info.uint32(10).string(reason).uint32(18).string(domain);
  info.uint32(26).fork().uint32(10).string("field").uint32(18).string(field).join();
  const any = new BinaryWriter()
    .uint32(10).string("type.googleapis.com/google.rpc.ErrorInfo")
    .uint32(18).bytes(info.finish());
  const st = new BinaryWriter()
    .uint32(8).int32(status.INVALID_ARGUMENT)
    .uint32(18).string("bad code")
    .uint32(26).bytes(any.finish());
  return Buffer.from(st.finish());
}

function serviceError(code: status, details?: Buffer) {
  const metadata = new Metadata();
  if (details) metadata.set("grpc-status-details-bin", details);
  return Object.assign(new Error("x"), { code, details: "bad code", metadata });
}

describe("TotpdError.fromServiceError", () => {
  it("decodes reason, field and metadata", () => {
    const e = TotpdError.fromServiceError(
      serviceError(status.INVALID_ARGUMENT, richStatus("totpd.v1", "ERROR_REASON_MALFORMED_CODE", "code")),
    );
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.equal(e.reason, ErrorReason.ERROR_REASON_MALFORMED_CODE);
    assert.equal(e.field, "code");
    assert.deepEqual(e.metadata, { field: "code" });
  });

  it("ignores foreign domains and unknown reasons", () => {
    for (const [domain, reason] of [["example.com", "ERROR_REASON_MALFORMED_CODE"], ["totpd.v1", "ERROR_REASON_FROM_THE_FUTURE"]]) {
      const e = TotpdError.fromServiceError(serviceError(status.INVALID_ARGUMENT, richStatus(domain, reason, "f")));
      assert.equal(e.reason, ErrorReason.ERROR_REASON_UNSPECIFIED);
      assert.equal(e.code, status.INVALID_ARGUMENT);
    }
  });

  it("survives a plain status and a garbage trailer", () => {
    const e = TotpdError.fromServiceError(serviceError(status.UNAVAILABLE, Buffer.from([0xff, 0xff, 0xff])));
    assert.equal(e.code, status.UNAVAILABLE);
    assert.equal(e.reason, ErrorReason.ERROR_REASON_UNSPECIFIED);
    assert.equal(e.field, "");
  });
});
