from . import audit_pb2 as _audit_pb2
from . import errors_pb2 as _errors_pb2
from . import factor_pb2 as _factor_pb2
from . import lifecycle_pb2 as _lifecycle_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollRequest(_message.Message):
    __slots__ = ("account_id", "label", "issuer", "algorithm", "digits", "period_seconds", "request_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    label: str
    issuer: str
    algorithm: _factor_pb2.Algorithm
    digits: int
    period_seconds: int
    request_id: str
    def __init__(self, account_id: _Optional[str] = ..., label: _Optional[str] = ..., issuer: _Optional[str] = ..., algorithm: _Optional[_Union[_factor_pb2.Algorithm, str]] = ..., digits: _Optional[int] = ..., period_seconds: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("factor", "otpauth_uri", "secret_base32", "qr_png", "qr_svg")
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    OTPAUTH_URI_FIELD_NUMBER: _ClassVar[int]
    SECRET_BASE32_FIELD_NUMBER: _ClassVar[int]
    QR_PNG_FIELD_NUMBER: _ClassVar[int]
    QR_SVG_FIELD_NUMBER: _ClassVar[int]
    factor: _factor_pb2.Factor
    otpauth_uri: str
    secret_base32: str
    qr_png: bytes
    qr_svg: str
    def __init__(self, factor: _Optional[_Union[_factor_pb2.Factor, _Mapping]] = ..., otpauth_uri: _Optional[str] = ..., secret_base32: _Optional[str] = ..., qr_png: _Optional[bytes] = ..., qr_svg: _Optional[str] = ...) -> None: ...

class ConfirmEnrollmentRequest(_message.Message):
    __slots__ = ("account_id", "factor_id", "code", "request_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    factor_id: str
    code: str
    request_id: str
    def __init__(self, account_id: _Optional[str] = ..., factor_id: _Optional[str] = ..., code: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ConfirmEnrollmentResponse(_message.Message):
    __slots__ = ("outcome", "factor")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    outcome: _factor_pb2.VerifyOutcome
    factor: _factor_pb2.Factor
    def __init__(self, outcome: _Optional[_Union[_factor_pb2.VerifyOutcome, _Mapping]] = ..., factor: _Optional[_Union[_factor_pb2.Factor, _Mapping]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("account_id", "code", "factor_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    FACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    code: str
    factor_id: str
    def __init__(self, account_id: _Optional[str] = ..., code: _Optional[str] = ..., factor_id: _Optional[str] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: _factor_pb2.VerifyOutcome
    def __init__(self, outcome: _Optional[_Union[_factor_pb2.VerifyOutcome, _Mapping]] = ...) -> None: ...

class BatchVerifyRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchVerifyItem]
    def __init__(self, items: _Optional[_Iterable[_Union[BatchVerifyItem, _Mapping]]] = ...) -> None: ...

class BatchVerifyItem(_message.Message):
    __slots__ = ("account_id", "code", "factor_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    FACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    code: str
    factor_id: str
    def __init__(self, account_id: _Optional[str] = ..., code: _Optional[str] = ..., factor_id: _Optional[str] = ...) -> None: ...

class BatchVerifyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchVerifyResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchVerifyResult, _Mapping]]] = ...) -> None: ...

class BatchVerifyResult(_message.Message):
    __slots__ = ("outcome", "error")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    outcome: _factor_pb2.VerifyOutcome
    error: _errors_pb2.ItemError
    def __init__(self, outcome: _Optional[_Union[_factor_pb2.VerifyOutcome, _Mapping]] = ..., error: _Optional[_Union[_errors_pb2.ItemError, _Mapping]] = ...) -> None: ...

class DisableRequest(_message.Message):
    __slots__ = ("account_id", "factor_id", "code", "force", "request_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    factor_id: str
    code: str
    force: bool
    request_id: str
    def __init__(self, account_id: _Optional[str] = ..., factor_id: _Optional[str] = ..., code: _Optional[str] = ..., force: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class DisableResponse(_message.Message):
    __slots__ = ("outcome", "factors")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    outcome: _factor_pb2.VerifyOutcome
    factors: _containers.RepeatedCompositeFieldContainer[_factor_pb2.Factor]
    def __init__(self, outcome: _Optional[_Union[_factor_pb2.VerifyOutcome, _Mapping]] = ..., factors: _Optional[_Iterable[_Union[_factor_pb2.Factor, _Mapping]]] = ...) -> None: ...

class GetFactorRequest(_message.Message):
    __slots__ = ("account_id", "factor_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    factor_id: str
    def __init__(self, account_id: _Optional[str] = ..., factor_id: _Optional[str] = ...) -> None: ...

class GetFactorResponse(_message.Message):
    __slots__ = ("factor",)
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    factor: _factor_pb2.Factor
    def __init__(self, factor: _Optional[_Union[_factor_pb2.Factor, _Mapping]] = ...) -> None: ...

class ListFactorsRequest(_message.Message):
    __slots__ = ("account_id", "include_inactive")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INACTIVE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    include_inactive: bool
    def __init__(self, account_id: _Optional[str] = ..., include_inactive: _Optional[bool] = ...) -> None: ...

class ListFactorsResponse(_message.Message):
    __slots__ = ("factors", "recovery_codes")
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_CODES_FIELD_NUMBER: _ClassVar[int]
    factors: _containers.RepeatedCompositeFieldContainer[_factor_pb2.Factor]
    recovery_codes: _lifecycle_pb2.RecoveryCodesStatus
    def __init__(self, factors: _Optional[_Iterable[_Union[_factor_pb2.Factor, _Mapping]]] = ..., recovery_codes: _Optional[_Union[_lifecycle_pb2.RecoveryCodesStatus, _Mapping]] = ...) -> None: ...
