export { TotpdClient, DEFAULT_TIMEOUT_MS, type TotpdClientOptions } from "./client.js";
export {
  TotpdError,
  UnauthenticatedError,
  PermissionDeniedError,
  TenantRequiredError,
  DOMAIN,
  parseReason,
} from "./errors.js";
export { type AuditEvent, type AuditFilter, type AuditPage } from "./audit.js";
export {
  type MfaStatus,
  type RecoveryCodeVerdict,
  type RecoveryCodes,
  type RecoveryCodesStatus,
  type ResyncResult,
  type UnlockResult,
} from "./lifecycle.js";
export { TENANT_HEADER, isLoopback } from "./auth.js";
export { ErrorReason } from "./gen/totpd/v1/errors.js";
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
} from "./types.js";
export { status as GrpcStatus } from "@grpc/grpc-js";
