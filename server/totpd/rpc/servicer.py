"""TotpService over gRPC: a thin translator between proto messages and MfaService.

No validation beyond what the proto cannot express (unknown enum numbers) and
no error handling: the service raises `TotpdError`, and the interceptor in
`totpd.rpc.interceptors` turns every exception into a status from one table.
"""

from __future__ import annotations

from urllib.parse import unquote

import grpc

from totpd import calls
from totpd.rpc import audit_convert, convert
from totpd.rpc.status import to_item_error
from totpd.service.errors import TotpdError
from totpd.service.mfa import MfaService
from totpd.v1 import audit_pb2 as audit_pb
from totpd.v1 import lifecycle_pb2 as lifecycle_pb
from totpd.v1 import totp_service_pb2 as pb


class TotpServicer:
    """Implements totpd.v1.TotpService; register with `add_TotpServiceServicer_to_server`."""

    def __init__(self, service: MfaService) -> None:
        self._service = service
        if service.coalescer is not None:
            # A coroutine: grpc.aio runs it on the event loop, where it waits for
            # its shared round without holding a worker thread.
            self.Verify = self._verify_on_loop  # type: ignore[method-assign, assignment]

    def Enroll(self, request: pb.EnrollRequest, context: grpc.ServicerContext) -> pb.EnrollResponse:
        enrollment = self._service.enroll(
            convert.enroll_params(request), request_id=convert.request_id(request)
        )
        return pb.EnrollResponse(
            factor=convert.factor_to_proto(enrollment.factor),
            otpauth_uri=enrollment.otpauth_uri,
            secret_base32=enrollment.secret_base32,
            qr_png=enrollment.qr_png,
            qr_svg=enrollment.qr_svg,
        )

    def ConfirmEnrollment(
        self, request: pb.ConfirmEnrollmentRequest, context: grpc.ServicerContext
    ) -> pb.ConfirmEnrollmentResponse:
        outcome, factor = self._service.confirm(
            request.account_id,
            request.factor_id,
            request.code,
            request_id=convert.request_id(request),
            caller=caller_of(context),
        )
        return pb.ConfirmEnrollmentResponse(
            outcome=convert.outcome_to_proto(outcome),
            factor=convert.factor_to_proto(factor),
        )

    def Verify(self, request: pb.VerifyRequest, context: grpc.ServicerContext) -> pb.VerifyResponse:
        outcome = self._service.verify(convert.verify_item(request), caller_of(context))
        response = pb.VerifyResponse()
        convert.fill_outcome(response.outcome, outcome)  # no message built and copied in
        return response

    async def _verify_on_loop(
        self, request: pb.VerifyRequest, context: grpc.ServicerContext
    ) -> pb.VerifyResponse:
        outcome = await self._service.verify_on_loop(
            convert.verify_item(request), caller_of(context)
        )
        response = pb.VerifyResponse()
        convert.fill_outcome(response.outcome, outcome)
        return response

    def BatchVerify(
        self, request: pb.BatchVerifyRequest, context: grpc.ServicerContext
    ) -> pb.BatchVerifyResponse:
        # The batch size first (BATCH_TOO_LARGE fails the whole call), before
        # the items are even converted; then every item gets its own verdict or error.
        self._service.check_batch_size(len(request.items))
        results = self._service.verify_batch(
            convert.verify_items(request.items), caller_of(context)
        )
        response = pb.BatchVerifyResponse()
        add_result = response.results.add
        fill_outcome = convert.fill_outcome
        for result in results:
            if isinstance(result, TotpdError):
                add_result().error.CopyFrom(to_item_error(result))
            else:
                fill_outcome(add_result().outcome, result)
        return response

    def Disable(
        self, request: pb.DisableRequest, context: grpc.ServicerContext
    ) -> pb.DisableResponse:
        outcome, factors = self._service.disable(
            request.account_id,
            convert.optional_str(request.factor_id),
            convert.optional_str(request.code),
            request.force,
            request_id=convert.request_id(request),
            caller=caller_of(context),
        )
        return pb.DisableResponse(
            outcome=convert.outcome_to_proto(outcome),
            factors=[convert.factor_to_proto(factor) for factor in factors],
        )

    def GetFactor(
        self, request: pb.GetFactorRequest, context: grpc.ServicerContext
    ) -> pb.GetFactorResponse:
        factor = self._service.get_factor(request.account_id, request.factor_id)
        return pb.GetFactorResponse(factor=convert.factor_to_proto(factor))

    def ListFactors(
        self, request: pb.ListFactorsRequest, context: grpc.ServicerContext
    ) -> pb.ListFactorsResponse:
        factors = self._service.list_factors(request.account_id, request.include_inactive)
        recovery_codes = self._service.recovery_codes_status(request.account_id)
        return pb.ListFactorsResponse(
            factors=[convert.factor_to_proto(f) for f in factors],
            recovery_codes=convert.recovery_status_to_proto(recovery_codes),
        )

    def ListAuditEvents(
        self, request: audit_pb.ListAuditEventsRequest, context: grpc.ServicerContext
    ) -> audit_pb.ListAuditEventsResponse:
        records, next_token = self._service.audit.list_events(audit_convert.audit_query(request))
        return audit_pb.ListAuditEventsResponse(
            events=[audit_convert.audit_event_to_proto(record) for record in records],
            next_page_token=next_token,
        )

    def GenerateRecoveryCodes(
        self, request: lifecycle_pb.GenerateRecoveryCodesRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb.GenerateRecoveryCodesResponse:
        generated = self._service.generate_recovery_codes(request.account_id)
        return lifecycle_pb.GenerateRecoveryCodesResponse(
            codes=generated.codes, status=convert.recovery_status_to_proto(generated.status)
        )

    def VerifyRecoveryCode(
        self, request: lifecycle_pb.VerifyRecoveryCodeRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb.VerifyRecoveryCodeResponse:
        verdict = self._service.verify_recovery_code(
            request.account_id, request.code, caller_of(context)
        )
        return lifecycle_pb.VerifyRecoveryCodeResponse(
            outcome=convert.outcome_to_proto(verdict.outcome),
            status=convert.recovery_status_to_proto(verdict.status),
        )

    def Unlock(
        self, request: lifecycle_pb.UnlockRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb.UnlockResponse:
        unlocked = self._service.unlock(request.account_id, convert.optional_str(request.factor_id))
        return convert.unlocked_to_proto(unlocked)

    def Resync(
        self, request: lifecycle_pb.ResyncRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb.ResyncResponse:
        outcome, factor = self._service.resync(
            request.account_id,
            request.factor_id,
            request.code1,
            request.code2,
            caller=caller_of(context),
        )
        return lifecycle_pb.ResyncResponse(
            outcome=convert.outcome_to_proto(outcome),
            factor=convert.factor_to_proto(factor),
        )


def caller_of(context: grpc.ServicerContext) -> str:
    """Who is calling, for the per-caller failure rate: the caller's name from
    the callers file (rpc/callers.py), or for the implicit local caller the
    peer's host without its port ("ipv4:10.0.0.7:53012" -> "10.0.0.7",
    "ipv6:[::1]:4711" -> "::1"), or the whole peer string for other
    transports. Local callers behind one proxy or NAT share it.
    """
    scope = calls.current()
    if scope.caller != calls.LOCAL_CALLER:
        return "caller:" + scope.caller  # apart from any peer host
    # The peer the rpc layer read when it resolved the caller: context.peer()
    # lets go of the GIL twice, a hand-off to another thread on a busy server.
    peer = unquote(scope.peer or context.peer() or "")
    kind, _, address = peer.partition(":")
    if kind == "ipv4":
        return address.rpartition(":")[0] or address
    if kind == "ipv6":
        host = address.rpartition(":")[0] or address
        return host.removeprefix("[").removesuffix("]")
    return peer
