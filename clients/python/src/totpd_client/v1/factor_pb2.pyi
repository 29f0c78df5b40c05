from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Algorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALGORITHM_UNSPECIFIED: _ClassVar[Algorithm]
    ALGORITHM_SHA1: _ClassVar[Algorithm]
    ALGORITHM_SHA256: _ClassVar[Algorithm]
    ALGORITHM_SHA512: _ClassVar[Algorithm]

class FactorState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FACTOR_STATE_UNSPECIFIED: _ClassVar[FactorState]
    FACTOR_STATE_PENDING: _ClassVar[FactorState]
    FACTOR_STATE_ACTIVE: _ClassVar[FactorState]
    FACTOR_STATE_DISABLED: _ClassVar[FactorState]
    FACTOR_STATE_EXPIRED: _ClassVar[FactorState]

class VerifyResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFY_RESULT_UNSPECIFIED: _ClassVar[VerifyResult]
    VERIFY_RESULT_VALID: _ClassVar[VerifyResult]
    VERIFY_RESULT_INVALID: _ClassVar[VerifyResult]
    VERIFY_RESULT_REPLAYED: _ClassVar[VerifyResult]
    VERIFY_RESULT_LOCKED: _ClassVar[VerifyResult]
ALGORITHM_UNSPECIFIED: Algorithm
ALGORITHM_SHA1: Algorithm
ALGORITHM_SHA256: Algorithm
ALGORITHM_SHA512: Algorithm
FACTOR_STATE_UNSPECIFIED: FactorState
FACTOR_STATE_PENDING: FactorState
FACTOR_STATE_ACTIVE: FactorState
FACTOR_STATE_DISABLED: FactorState
FACTOR_STATE_EXPIRED: FactorState
VERIFY_RESULT_UNSPECIFIED: VerifyResult
VERIFY_RESULT_VALID: VerifyResult
VERIFY_RESULT_INVALID: VerifyResult
VERIFY_RESULT_REPLAYED: VerifyResult
VERIFY_RESULT_LOCKED: VerifyResult

class Factor(_message.Message):
    __slots__ = ("factor_id", "account_id", "label", "issuer", "algorithm", "digits", "period_seconds", "state", "created_at_unix", "confirmed_at_unix", "last_used_at_unix", "expires_at_unix", "drift_steps")
    FACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    DRIFT_STEPS_FIELD_NUMBER: _ClassVar[int]
    factor_id: str
    account_id: str
    label: str
    issuer: str
    algorithm: Algorithm
    digits: int
    period_seconds: int
    state: FactorState
    created_at_unix: int
    confirmed_at_unix: int
    last_used_at_unix: int
    expires_at_unix: int
    drift_steps: int
    def __init__(self, factor_id: _Optional[str] = ..., account_id: _Optional[str] = ..., label: _Optional[str] = ..., issuer: _Optional[str] = ..., algorithm: _Optional[_Union[Algorithm, str]] = ..., digits: _Optional[int] = ..., period_seconds: _Optional[int] = ..., state: _Optional[_Union[FactorState, str]] = ..., created_at_unix: _Optional[int] = ..., confirmed_at_unix: _Optional[int] = ..., last_used_at_unix: _Optional[int] = ..., expires_at_unix: _Optional[int] = ..., drift_steps: _Optional[int] = ...) -> None: ...

class VerifyOutcome(_message.Message):
    __slots__ = ("result", "factor_id", "step_offset", "attempts_left", "retry_after_seconds", "unlock_required")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_OFFSET_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_LEFT_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UNLOCK_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    result: VerifyResult
    factor_id: str
    step_offset: int
    attempts_left: int
    retry_after_seconds: int
    unlock_required: bool
    def __init__(self, result: _Optional[_Union[VerifyResult, str]] = ..., factor_id: _Optional[str] = ..., step_offset: _Optional[int] = ..., attempts_left: _Optional[int] = ..., retry_after_seconds: _Optional[int] = ..., unlock_required: _Optional[bool] = ...) -> None: ...
