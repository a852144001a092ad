from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    INVALID_ITEM: _ClassVar[ErrorCode]
    TIMEOUT: _ClassVar[ErrorCode]
    RESOURCE_EXHAUSTED: _ClassVar[ErrorCode]
    INTERNAL: _ClassVar[ErrorCode]
    CANCELLED: _ClassVar[ErrorCode]
ERROR_CODE_UNSPECIFIED: ErrorCode
INVALID_ITEM: ErrorCode
TIMEOUT: ErrorCode
RESOURCE_EXHAUSTED: ErrorCode
INTERNAL: ErrorCode
CANCELLED: ErrorCode

class Message(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("id", "prompt_text", "prompt_messages", "response_text", "response_messages", "reference", "steps", "group_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEXT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TEXT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    prompt_text: str
    prompt_messages: Conversation
    response_text: str
    response_messages: Conversation
    reference: str
    steps: _containers.RepeatedScalarFieldContainer[str]
    group_id: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., prompt_text: _Optional[str] = ..., prompt_messages: _Optional[_Union[Conversation, _Mapping]] = ..., response_text: _Optional[str] = ..., response_messages: _Optional[_Union[Conversation, _Mapping]] = ..., reference: _Optional[str] = ..., steps: _Optional[_Iterable[str]] = ..., group_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("id", "score", "step_scores", "details", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    STEP_SCORES_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    step_scores: _containers.RepeatedScalarFieldContainer[float]
    details: _struct_pb2.Struct
    error: ItemError
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., step_scores: _Optional[_Iterable[float]] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("request_id", "scorer", "items", "options")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    scorer: str
    items: _containers.RepeatedCompositeFieldContainer[Item]
    options: _struct_pb2.Struct
    def __init__(self, request_id: _Optional[str] = ..., scorer: _Optional[str] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ScoreMetadata(_message.Message):
    __slots__ = ("items", "queue_time_ns", "compute_time_ns", "deduplicated_items", "cache_hits", "health")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    items: int
    queue_time_ns: int
    compute_time_ns: int
    deduplicated_items: int
    cache_hits: int
    health: RewardHealth
    def __init__(self, items: _Optional[int] = ..., queue_time_ns: _Optional[int] = ..., compute_time_ns: _Optional[int] = ..., deduplicated_items: _Optional[int] = ..., cache_hits: _Optional[int] = ..., health: _Optional[_Union[RewardHealth, _Mapping]] = ...) -> None: ...

class RewardHealth(_message.Message):
    __slots__ = ("groups", "flat_groups", "all_zero_groups", "scored_items", "error_items", "score_mean", "score_std", "score_min", "score_max", "verdicts", "length_correlation")
    class VerdictsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    FLAT_GROUPS_FIELD_NUMBER: _ClassVar[int]
    ALL_ZERO_GROUPS_FIELD_NUMBER: _ClassVar[int]
    SCORED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    ERROR_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SCORE_MEAN_FIELD_NUMBER: _ClassVar[int]
    SCORE_STD_FIELD_NUMBER: _ClassVar[int]
    SCORE_MIN_FIELD_NUMBER: _ClassVar[int]
    SCORE_MAX_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_CORRELATION_FIELD_NUMBER: _ClassVar[int]
    groups: int
    flat_groups: int
    all_zero_groups: int
    scored_items: int
    error_items: int
    score_mean: float
    score_std: float
    score_min: float
    score_max: float
    verdicts: _containers.ScalarMap[str, int]
    length_correlation: float
    def __init__(self, groups: _Optional[int] = ..., flat_groups: _Optional[int] = ..., all_zero_groups: _Optional[int] = ..., scored_items: _Optional[int] = ..., error_items: _Optional[int] = ..., score_mean: _Optional[float] = ..., score_std: _Optional[float] = ..., score_min: _Optional[float] = ..., score_max: _Optional[float] = ..., verdicts: _Optional[_Mapping[str, int]] = ..., length_correlation: _Optional[float] = ...) -> None: ...

class RequestError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("request_id", "scorer", "results", "metadata", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    scorer: str
    results: _containers.RepeatedCompositeFieldContainer[Result]
    metadata: ScoreMetadata
    error: RequestError
    def __init__(self, request_id: _Optional[str] = ..., scorer: _Optional[str] = ..., results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ..., metadata: _Optional[_Union[ScoreMetadata, _Mapping]] = ..., error: _Optional[_Union[RequestError, _Mapping]] = ...) -> None: ...

class ListScorersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OptionInfo(_message.Message):
    __slots__ = ("name", "type", "default", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    default: str
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., default: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ScorerInfo(_message.Message):
    __slots__ = ("name", "kind", "description", "options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    description: str
    options: _containers.RepeatedCompositeFieldContainer[OptionInfo]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., description: _Optional[str] = ..., options: _Optional[_Iterable[_Union[OptionInfo, _Mapping]]] = ...) -> None: ...

class ListScorersResponse(_message.Message):
    __slots__ = ("scorers",)
    SCORERS_FIELD_NUMBER: _ClassVar[int]
    scorers: _containers.RepeatedCompositeFieldContainer[ScorerInfo]
    def __init__(self, scorers: _Optional[_Iterable[_Union[ScorerInfo, _Mapping]]] = ...) -> None: ...
