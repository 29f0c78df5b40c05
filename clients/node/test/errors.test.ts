// Decoding of google.rpc.Status details, without a server.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Metadata, status } from "@grpc/grpc-js";
import { ErrorReason, TotpdError } from "../src";
import * as pb from "../src/gen/totpd/v1/factor";
import { outcomeFromProto } from "../src/types";
import { statusDetails } from "./fake";

function richStatus(domain: string, reason: string, field: string): Buffer {
  const info = new BinaryWriter();
  info.uint32(10).string(reason).uint32(18).string(domain);
  info.uint32(26).fork().uint32(10).string("field").uint32(18).string(field).join();
  const any = new BinaryWriter()
    .uint32(10)
    .string("type.googleapis.com/google.rpc.ErrorInfo")
    .uint32(18)
    .bytes(info.finish());
  const st = new BinaryWriter()
    .uint32(8)
    .int32(status.INVALID_ARGUMENT)
    .uint32(18)
    .string("bad code")
    .uint32(26)
    .bytes(any.finish());
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
      serviceError(
        status.INVALID_ARGUMENT,
        richStatus("totpd.v1", "ERROR_REASON_MALFORMED_CODE", "code"),
      ),
    );
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.equal(e.reason, ErrorReason.ERROR_REASON_MALFORMED_CODE);
    assert.equal(e.field, "code");
    assert.deepEqual(e.metadata, { field: "code" });
  });

  it("ignores foreign domains and unknown reasons", () => {
    for (const [domain, reason] of [
      ["example.com", "ERROR_REASON_MALFORMED_CODE"],
      ["totpd.v1", "ERROR_REASON_FROM_THE_FUTURE"],
    ]) {
      const e = TotpdError.fromServiceError(
        serviceError(status.INVALID_ARGUMENT, richStatus(domain, reason, "f")),
      );
      assert.equal(e.reason, ErrorReason.ERROR_REASON_UNSPECIFIED);
      assert.equal(e.code, status.INVALID_ARGUMENT);
    }
  });

  it("survives a plain status and a garbage trailer", () => {
    const e = TotpdError.fromServiceError(
      serviceError(status.UNAVAILABLE, Buffer.from([0xff, 0xff, 0xff])),
    );
    assert.equal(e.code, status.UNAVAILABLE);
    assert.equal(e.reason, ErrorReason.ERROR_REASON_UNSPECIFIED);
    assert.equal(e.field, "");
  });
});

describe("new reasons and RetryInfo", () => {
  it("decodes DEADLINE_EXCEEDED, RATE_LIMITED and REQUEST_ID_REUSED", () => {
    for (const [name, reason] of [
      ["ERROR_REASON_DEADLINE_EXCEEDED", ErrorReason.ERROR_REASON_DEADLINE_EXCEEDED],
      ["ERROR_REASON_RATE_LIMITED", ErrorReason.ERROR_REASON_RATE_LIMITED],
      ["ERROR_REASON_REQUEST_ID_REUSED", ErrorReason.ERROR_REASON_REQUEST_ID_REUSED],
    ] as const) {
      const e = TotpdError.fromServiceError(
        serviceError(status.INVALID_ARGUMENT, richStatus("totpd.v1", name, "request_id")),
      );
      assert.equal(e.reason, reason);
    }
  });

  it("exposes the RetryInfo delay beside the reason", () => {
    const details = statusDetails(
      { code: status.RESOURCE_EXHAUSTED, reason: "ERROR_REASON_RATE_LIMITED", retryAfterMs: 1500 },
      "slow down",
    );
    const e = TotpdError.fromServiceError(serviceError(status.RESOURCE_EXHAUSTED, details));
    assert.equal(e.code, status.RESOURCE_EXHAUSTED);
    assert.equal(e.reason, ErrorReason.ERROR_REASON_RATE_LIMITED);
    assert.equal(e.retryAfterMs, 1500);
  });

  it("has no retryAfterMs without a RetryInfo", () => {
    const e = TotpdError.fromServiceError(
      serviceError(
        status.INVALID_ARGUMENT,
        richStatus("totpd.v1", "ERROR_REASON_MALFORMED_CODE", "code"),
      ),
    );
    assert.equal(e.retryAfterMs, undefined);
  });

  it("decodes unlockRequired", () => {
    const o = outcomeFromProto({
      ...pb.VerifyOutcome.create(),
      result: pb.VerifyResult.VERIFY_RESULT_LOCKED,
      unlockRequired: true,
    });
    assert.equal(o.result, "LOCKED");
    assert.equal(o.unlockRequired, true);
    assert.equal(outcomeFromProto(undefined).unlockRequired, false);
  });
});
