from google.protobuf import empty_pb2 as _empty_pb2
from edgegrad.v1 import job_pb2 as _job_pb2
from edgegrad.v1 import network_pb2 as _network_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("version", "max_nodes", "max_edges", "max_batch", "max_message_bytes", "chunk_bytes", "max_result_bytes", "activations", "losses", "reductions", "dtypes", "result_ttl_seconds", "network_ttl_seconds", "heartbeat_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    MAX_EDGES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    REDUCTIONS_FIELD_NUMBER: _ClassVar[int]
    DTYPES_FIELD_NUMBER: _ClassVar[int]
    RESULT_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    version: str
    max_nodes: int
    max_edges: int
    max_batch: int
    max_message_bytes: int
    chunk_bytes: int
    max_result_bytes: int
    activations: _containers.RepeatedScalarFieldContainer[str]
    losses: _containers.RepeatedScalarFieldContainer[str]
    reductions: _containers.RepeatedScalarFieldContainer[str]
    dtypes: _containers.RepeatedScalarFieldContainer[str]
    result_ttl_seconds: int
    network_ttl_seconds: int
    heartbeat_ms: int
    def __init__(self, version: _Optional[str] = ..., max_nodes: _Optional[int] = ..., max_edges: _Optional[int] = ..., max_batch: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., max_result_bytes: _Optional[int] = ..., activations: _Optional[_Iterable[str]] = ..., losses: _Optional[_Iterable[str]] = ..., reductions: _Optional[_Iterable[str]] = ..., dtypes: _Optional[_Iterable[str]] = ..., result_ttl_seconds: _Optional[int] = ..., network_ttl_seconds: _Optional[int] = ..., heartbeat_ms: _Optional[int] = ...) -> None: ...

class RegisterNetworkRequest(_message.Message):
    __slots__ = ("network",)
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    network: _network_pb2.Network
    def __init__(self, network: _Optional[_Union[_network_pb2.Network, _Mapping]] = ...) -> None: ...

class GetNetworkRequest(_message.Message):
    __slots__ = ("hash",)
    HASH_FIELD_NUMBER: _ClassVar[int]
    hash: str
    def __init__(self, hash: _Optional[str] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("request", "request_id", "shards")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    request: _job_pb2.GradientRequest
    request_id: str
    shards: int
    def __init__(self, request: _Optional[_Union[_job_pb2.GradientRequest, _Mapping]] = ..., request_id: _Optional[str] = ..., shards: _Optional[int] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_job_pb2.Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[_job_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("name", "after_seq")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    name: str
    after_seq: int
    def __init__(self, name: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...
