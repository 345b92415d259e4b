import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from edgegrad.v1 import job_pb2 as _job_pb2
from edgegrad.v1 import network_pb2 as _network_pb2
from edgegrad.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
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
    __slots__ = ("version", "max_nodes", "max_edges", "max_batch", "max_message_bytes", "chunk_bytes", "max_result_bytes", "activations", "losses", "reductions", "dtypes", "result_ttl_seconds", "network_ttl_seconds", "heartbeat_ms", "result_buffer_bytes", "worker_memory_bytes", "tenant_max_jobs", "tenant_max_result_bytes")
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
    RESULT_BUFFER_BYTES_FIELD_NUMBER: _ClassVar[int]
    WORKER_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    TENANT_MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    TENANT_MAX_RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
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
    result_buffer_bytes: int
    worker_memory_bytes: int
    tenant_max_jobs: int
    tenant_max_result_bytes: int
    def __init__(self, version: _Optional[str] = ..., max_nodes: _Optional[int] = ..., max_edges: _Optional[int] = ..., max_batch: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., max_result_bytes: _Optional[int] = ..., activations: _Optional[_Iterable[str]] = ..., losses: _Optional[_Iterable[str]] = ..., reductions: _Optional[_Iterable[str]] = ..., dtypes: _Optional[_Iterable[str]] = ..., result_ttl_seconds: _Optional[int] = ..., network_ttl_seconds: _Optional[int] = ..., heartbeat_ms: _Optional[int] = ..., result_buffer_bytes: _Optional[int] = ..., worker_memory_bytes: _Optional[int] = ..., tenant_max_jobs: _Optional[int] = ..., tenant_max_result_bytes: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("request", "request_id", "shard_rows", "population", "shard_networks")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_ROWS_FIELD_NUMBER: _ClassVar[int]
    POPULATION_FIELD_NUMBER: _ClassVar[int]
    SHARD_NETWORKS_FIELD_NUMBER: _ClassVar[int]
    request: _job_pb2.GradientRequest
    request_id: str
    shard_rows: int
    population: _job_pb2.PopulationRequest
    shard_networks: int
    def __init__(self, request: _Optional[_Union[_job_pb2.GradientRequest, _Mapping]] = ..., request_id: _Optional[str] = ..., shard_rows: _Optional[int] = ..., population: _Optional[_Union[_job_pb2.PopulationRequest, _Mapping]] = ..., shard_networks: _Optional[int] = ...) -> None: ...

class SubmitJobsRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SubmitJobRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SubmitJobRequest, _Mapping]]] = ...) -> None: ...

class SubmitJobResult(_message.Message):
    __slots__ = ("job", "error")
    JOB_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    error: _status_pb2.Status
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class SubmitJobsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SubmitJobResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SubmitJobResult, _Mapping]]] = ...) -> None: ...

class UploadPiece(_message.Message):
    __slots__ = ("field", "rows", "data")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    field: str
    rows: _tensor_pb2.Tensor
    data: bytes
    def __init__(self, field: _Optional[str] = ..., rows: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Upload(_message.Message):
    __slots__ = ("id", "rows", "target_rows", "piece_rows", "expire_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TARGET_ROWS_FIELD_NUMBER: _ClassVar[int]
    PIECE_ROWS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    rows: int
    target_rows: int
    piece_rows: int
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., rows: _Optional[int] = ..., target_rows: _Optional[int] = ..., piece_rows: _Optional[int] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AckJobRequest(_message.Message):
    __slots__ = ("name", "seq")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    name: str
    seq: int
    def __init__(self, name: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

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

class WatchJobsRequest(_message.Message):
    __slots__ = ("watches",)
    WATCHES_FIELD_NUMBER: _ClassVar[int]
    watches: _containers.RepeatedCompositeFieldContainer[WatchJobRequest]
    def __init__(self, watches: _Optional[_Iterable[_Union[WatchJobRequest, _Mapping]]] = ...) -> None: ...

class JobsEvent(_message.Message):
    __slots__ = ("name", "event", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    event: _job_pb2.JobEvent
    error: _status_pb2.Status
    def __init__(self, name: _Optional[str] = ..., event: _Optional[_Union[_job_pb2.JobEvent, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...
