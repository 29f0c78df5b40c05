from totpd.v1 import factor_pb2 as _factor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecoveryCodesStatus(_message.Message):
    __slots__ = ("remaining", "issued", "generated_at_unix")
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    remaining: int
    issued: int
    generated_at_unix: int
    def __init__(self, remaining: _Optional[int] = ..., issued: _Optional[int] = ..., generated_at_unix: _Optional[int] = ...) -> None: ...

class GenerateRecoveryCodesRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GenerateRecoveryCodesResponse(_message.Message):
    __slots__ = ("codes", "status")
    CODES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[str]
    status: RecoveryCodesStatus
    def __init__(self, codes: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[RecoveryCodesStatus, _Mapping]] = ...) -> None: ...

class VerifyRecoveryCodeRequest(_message.Message):
    __slots__ = ("account_id", "code")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    code: str
    def __init__(self, account_id: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class VerifyRecoveryCodeResponse(_message.Message):
    __slots__ = ("outcome", "status")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    outcome: _factor_pb2.VerifyOutcome
    status: RecoveryCodesStatus
    def __init__(self, outcome: _Optional[_Union[_factor_pb2.VerifyOutcome, _Mapping]] = ..., status: _Optional[_Union[RecoveryCodesStatus, _Mapping]] = ...) -> None: ...

class UnlockRequest(_message.Message):
    __slots__ = ("account_id", "factor_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    factor_id: str
    def __init__(self, account_id: _Optional[str] = ..., factor_id: _Optional[str] = ...) -> None: ...

class UnlockResponse(_message.Message):
    __slots__ = ("lock_lifted", "consecutive_failures_cleared", "factors_cleared", "budget_refilled")
    LOCK_LIFTED_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_CLEARED_FIELD_NUMBER: _ClassVar[int]
    FACTORS_CLEARED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_REFILLED_FIELD_NUMBER: _ClassVar[int]
    lock_lifted: bool
    consecutive_failures_cleared: int
    factors_cleared: int
    budget_refilled: bool
    def __init__(self, lock_lifted: _Optional[bool] = ..., consecutive_failures_cleared: _Optional[int] = ..., factors_cleared: _Optional[int] = ..., budget_refilled: _Optional[bool] = ...) -> None: ...

class ResyncRequest(_message.Message):
    __slots__ = ("account_id", "factor_id", "code1", "code2")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    CODE1_FIELD_NUMBER: _ClassVar[int]
    CODE2_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    factor_id: str
    code1: str
    code2: str
    def __init__(self, account_id: _Optional[str] = ..., factor_id: _Optional[str] = ..., code1: _Optional[str] = ..., code2: _Optional[str] = ...) -> None: ...

class ResyncResponse(_message.Message):
    __slots__ = ("outcome", "factor")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    outcome: _factor_pb2.VerifyOutcome
    factor: _factor_pb2.Factor
    def __init__(self, outcome: _Optional[_Union[_factor_pb2.VerifyOutcome, _Mapping]] = ..., factor: _Optional[_Union[_factor_pb2.Factor, _Mapping]] = ...) -> None: ...
