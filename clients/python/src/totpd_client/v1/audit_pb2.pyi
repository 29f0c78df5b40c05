from . import errors_pb2 as _errors_pb2
from . import factor_pb2 as _factor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditEvent(_message.Message):
    __slots__ = ("event_id", "time_unix_micros", "caller", "tenant", "method", "account_id", "factor_id", "verify_result", "error_reason", "status_code", "step_offset", "request_id", "peer")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_MICROS_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    VERIFY_RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    STEP_OFFSET_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    time_unix_micros: int
    caller: str
    tenant: str
    method: str
    account_id: str
    factor_id: str
    verify_result: _factor_pb2.VerifyResult
    error_reason: _errors_pb2.ErrorReason
    status_code: str
    step_offset: int
    request_id: str
    peer: str
    def __init__(self, event_id: _Optional[int] = ..., time_unix_micros: _Optional[int] = ..., caller: _Optional[str] = ..., tenant: _Optional[str] = ..., method: _Optional[str] = ..., account_id: _Optional[str] = ..., factor_id: _Optional[str] = ..., verify_result: _Optional[_Union[_factor_pb2.VerifyResult, str]] = ..., error_reason: _Optional[_Union[_errors_pb2.ErrorReason, str]] = ..., status_code: _Optional[str] = ..., step_offset: _Optional[int] = ..., request_id: _Optional[str] = ..., peer: _Optional[str] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("tenant", "account_id", "caller", "method", "start_time_unix_micros", "end_time_unix_micros", "page_size", "page_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_MICROS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_MICROS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    account_id: str
    caller: str
    method: str
    start_time_unix_micros: int
    end_time_unix_micros: int
    page_size: int
    page_token: str
    def __init__(self, tenant: _Optional[str] = ..., account_id: _Optional[str] = ..., caller: _Optional[str] = ..., method: _Optional[str] = ..., start_time_unix_micros: _Optional[int] = ..., end_time_unix_micros: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
