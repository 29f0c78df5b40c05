export { TotpdClient, DEFAULT_TIMEOUT_MS, type TotpdClientOptions } from "./client";
export { TotpdError, DOMAIN, parseReason } from "./errors";
export { ErrorReason } from "./gen/totpd/v1/errors";
export {
  Algorithm,
  FactorState,
  type BatchItem,
  type BatchResult,
  type Confirmation,
  type DisableOptions,
  type DisableResult,
  type EnrollOptions,
  type Enrollment,
  type Factor,
  type MutationOptions,
  type VerifyOutcome,
  type VerifyResult,
} from "./types";
export { status as GrpcStatus } from "@grpc/grpc-js";
