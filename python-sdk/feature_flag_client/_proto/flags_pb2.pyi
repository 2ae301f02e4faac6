# Generated from grpc_api/protos/flags/v1/flags.proto by `python -m grpc_api.codegen`. Do not edit.
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EvaluateRequest(_message.Message):
    __slots__ = ("flag_id", "user_id", "context", "environment")
    FLAG_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    flag_id: str
    user_id: str
    context: _struct_pb2.Struct
    environment: str
    def __init__(self, flag_id: _Optional[str] = ..., user_id: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., environment: _Optional[str] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("flag_id", "enabled", "variant", "value", "reason", "rule", "environment", "version", "error")
    FLAG_ID_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    flag_id: str
    enabled: bool
    variant: str
    value: _struct_pb2.Value
    reason: str
    rule: int
    environment: str
    version: int
    error: Error
    def __init__(self, flag_id: _Optional[str] = ..., enabled: _Optional[bool] = ..., variant: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., reason: _Optional[str] = ..., rule: _Optional[int] = ..., environment: _Optional[str] = ..., version: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("evaluation",)
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    evaluation: Evaluation
    def __init__(self, evaluation: _Optional[_Union[Evaluation, _Mapping]] = ...) -> None: ...

class EvaluateBulkRequest(_message.Message):
    __slots__ = ("flag_ids", "user_id", "context", "environment")
    FLAG_IDS_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    flag_ids: _containers.RepeatedScalarFieldContainer[str]
    user_id: str
    context: _struct_pb2.Struct
    environment: str
    def __init__(self, flag_ids: _Optional[_Iterable[str]] = ..., user_id: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., environment: _Optional[str] = ...) -> None: ...

class EvaluateBulkResponse(_message.Message):
    __slots__ = ("environment", "version", "evaluations")
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    environment: str
    version: int
    evaluations: _containers.RepeatedCompositeFieldContainer[Evaluation]
    def __init__(self, environment: _Optional[str] = ..., version: _Optional[int] = ..., evaluations: _Optional[_Iterable[_Union[Evaluation, _Mapping]]] = ...) -> None: ...

class TrackedEvent(_message.Message):
    __slots__ = ("event", "user_id", "value", "timestamp", "properties", "id")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    event: str
    user_id: str
    value: float
    timestamp: str
    properties: _struct_pb2.Struct
    id: str
    def __init__(self, event: _Optional[str] = ..., user_id: _Optional[str] = ..., value: _Optional[float] = ..., timestamp: _Optional[str] = ..., properties: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class TrackRequest(_message.Message):
    __slots__ = ("events", "environment")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TrackedEvent]
    environment: str
    def __init__(self, events: _Optional[_Iterable[_Union[TrackedEvent, _Mapping]]] = ..., environment: _Optional[str] = ...) -> None: ...

class TrackReply(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class WatchFlagsRequest(_message.Message):
    __slots__ = ("environment", "since_version")
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    environment: str
    since_version: int
    def __init__(self, environment: _Optional[str] = ..., since_version: _Optional[int] = ...) -> None: ...

class WatchFlagsEvent(_message.Message):
    __slots__ = ("type", "action", "flag", "environment", "version", "snapshot")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    type: str
    action: str
    flag: _struct_pb2.Struct
    environment: str
    version: int
    snapshot: _struct_pb2.Struct
    def __init__(self, type: _Optional[str] = ..., action: _Optional[str] = ..., flag: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., environment: _Optional[str] = ..., version: _Optional[int] = ..., snapshot: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
