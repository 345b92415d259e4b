import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from edgegrad.v1 import network_pb2 as _network_pb2
from edgegrad.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class ResultField(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_FIELD_UNSPECIFIED: _ClassVar[ResultField]
    RESULT_FIELD_OUTPUTS: _ClassVar[ResultField]
    RESULT_FIELD_EDGE_GRADS: _ClassVar[ResultField]
    RESULT_FIELD_DELTAS: _ClassVar[ResultField]
    RESULT_FIELD_NORMS: _ClassVar[ResultField]
    RESULT_FIELD_LOSS: _ClassVar[ResultField]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
RESULT_FIELD_UNSPECIFIED: ResultField
RESULT_FIELD_OUTPUTS: ResultField
RESULT_FIELD_EDGE_GRADS: ResultField
RESULT_FIELD_DELTAS: ResultField
RESULT_FIELD_NORMS: ResultField
RESULT_FIELD_LOSS: ResultField

class GradientRequest(_message.Message):
    __slots__ = ("network_hash", "network_inline", "inputs", "targets", "loss", "reduction", "per_example", "dtype", "upload", "norms", "clip_norm")
    NETWORK_HASH_FIELD_NUMBER: _ClassVar[int]
    NETWORK_INLINE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_FIELD_NUMBER: _ClassVar[int]
    PER_EXAMPLE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    NORMS_FIELD_NUMBER: _ClassVar[int]
    CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    network_hash: str
    network_inline: _network_pb2.Network
    inputs: _tensor_pb2.Tensor
    targets: _tensor_pb2.Tensor
    loss: str
    reduction: str
    per_example: bool
    dtype: str
    upload: str
    norms: bool
    clip_norm: float
    def __init__(self, network_hash: _Optional[str] = ..., network_inline: _Optional[_Union[_network_pb2.Network, _Mapping]] = ..., inputs: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., targets: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., loss: _Optional[str] = ..., reduction: _Optional[str] = ..., per_example: _Optional[bool] = ..., dtype: _Optional[str] = ..., upload: _Optional[str] = ..., norms: _Optional[bool] = ..., clip_norm: _Optional[float] = ...) -> None: ...

class PopulationMember(_message.Message):
    __slots__ = ("network_hash", "network_inline", "weights", "biases")
    NETWORK_HASH_FIELD_NUMBER: _ClassVar[int]
    NETWORK_INLINE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    BIASES_FIELD_NUMBER: _ClassVar[int]
    network_hash: str
    network_inline: _network_pb2.Network
    weights: _tensor_pb2.Tensor
    biases: _tensor_pb2.Tensor
    def __init__(self, network_hash: _Optional[str] = ..., network_inline: _Optional[_Union[_network_pb2.Network, _Mapping]] = ..., weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., biases: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class PopulationRequest(_message.Message):
    __slots__ = ("members", "inputs", "inputs_each", "targets", "targets_each", "loss", "reduction", "per_example", "dtype", "norms", "clip_norm", "outputs_only", "networks", "networks_hash", "weights", "biases", "row_counts", "inputs_packed", "targets_packed", "upload", "uploaded")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_EACH_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_EACH_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_FIELD_NUMBER: _ClassVar[int]
    PER_EXAMPLE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    NORMS_FIELD_NUMBER: _ClassVar[int]
    CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_ONLY_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_HASH_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    BIASES_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNTS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_PACKED_FIELD_NUMBER: _ClassVar[int]
    TARGETS_PACKED_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[PopulationMember]
    inputs: _tensor_pb2.Tensor
    inputs_each: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    targets: _tensor_pb2.Tensor
    targets_each: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    loss: str
    reduction: str
    per_example: bool
    dtype: str
    norms: bool
    clip_norm: float
    outputs_only: bool
    networks: _network_pb2.Networks
    networks_hash: str
    weights: _tensor_pb2.Tensor
    biases: _tensor_pb2.Tensor
    row_counts: _tensor_pb2.Tensor
    inputs_packed: _tensor_pb2.Tensor
    targets_packed: _tensor_pb2.Tensor
    upload: str
    uploaded: _containers.RepeatedCompositeFieldContainer[UploadedField]
    def __init__(self, members: _Optional[_Iterable[_Union[PopulationMember, _Mapping]]] = ..., inputs: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., inputs_each: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., targets: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., targets_each: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., loss: _Optional[str] = ..., reduction: _Optional[str] = ..., per_example: _Optional[bool] = ..., dtype: _Optional[str] = ..., norms: _Optional[bool] = ..., clip_norm: _Optional[float] = ..., outputs_only: _Optional[bool] = ..., networks: _Optional[_Union[_network_pb2.Networks, _Mapping]] = ..., networks_hash: _Optional[str] = ..., weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., biases: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., row_counts: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., inputs_packed: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., targets_packed: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., upload: _Optional[str] = ..., uploaded: _Optional[_Iterable[_Union[UploadedField, _Mapping]]] = ...) -> None: ...

class UploadedField(_message.Message):
    __slots__ = ("field", "values", "piece_values", "columns")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    PIECE_VALUES_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    field: str
    values: int
    piece_values: int
    columns: int
    def __init__(self, field: _Optional[str] = ..., values: _Optional[int] = ..., piece_values: _Optional[int] = ..., columns: _Optional[int] = ...) -> None: ...

class BatchPieces(_message.Message):
    __slots__ = ("upload", "rows", "piece_rows", "dtype", "input_columns", "target_columns")
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    PIECE_ROWS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    TARGET_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    upload: str
    rows: int
    piece_rows: int
    dtype: _tensor_pb2.DType
    input_columns: int
    target_columns: int
    def __init__(self, upload: _Optional[str] = ..., rows: _Optional[int] = ..., piece_rows: _Optional[int] = ..., dtype: _Optional[_Union[_tensor_pb2.DType, str]] = ..., input_columns: _Optional[int] = ..., target_columns: _Optional[int] = ...) -> None: ...

class FieldLayout(_message.Message):
    __slots__ = ("field", "shape", "row_elements")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    ROW_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    field: ResultField
    shape: _containers.RepeatedScalarFieldContainer[int]
    row_elements: int
    def __init__(self, field: _Optional[_Union[ResultField, str]] = ..., shape: _Optional[_Iterable[int]] = ..., row_elements: _Optional[int] = ...) -> None: ...

class ResultLayout(_message.Message):
    __slots__ = ("dtype", "loss_mode", "fields", "chunk_count", "batch", "chunk_bytes", "shard_rows", "shard_count", "buffer_bytes", "population")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LOSS_MODE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHARD_ROWS_FIELD_NUMBER: _ClassVar[int]
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    BUFFER_BYTES_FIELD_NUMBER: _ClassVar[int]
    POPULATION_FIELD_NUMBER: _ClassVar[int]
    dtype: _tensor_pb2.DType
    loss_mode: bool
    fields: _containers.RepeatedCompositeFieldContainer[FieldLayout]
    chunk_count: int
    batch: int
    chunk_bytes: int
    shard_rows: int
    shard_count: int
    buffer_bytes: int
    population: PopulationLayout
    def __init__(self, dtype: _Optional[_Union[_tensor_pb2.DType, str]] = ..., loss_mode: _Optional[bool] = ..., fields: _Optional[_Iterable[_Union[FieldLayout, _Mapping]]] = ..., chunk_count: _Optional[int] = ..., batch: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., shard_rows: _Optional[int] = ..., shard_count: _Optional[int] = ..., buffer_bytes: _Optional[int] = ..., population: _Optional[_Union[PopulationLayout, _Mapping]] = ...) -> None: ...

class PopulationLayout(_message.Message):
    __slots__ = ("size", "sizes", "shard_starts", "outputs_only", "per_example", "networks_hash", "shard_rows")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    SHARD_STARTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_ONLY_FIELD_NUMBER: _ClassVar[int]
    PER_EXAMPLE_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_HASH_FIELD_NUMBER: _ClassVar[int]
    SHARD_ROWS_FIELD_NUMBER: _ClassVar[int]
    size: int
    sizes: _tensor_pb2.Tensor
    shard_starts: _containers.RepeatedScalarFieldContainer[int]
    outputs_only: bool
    per_example: bool
    networks_hash: str
    shard_rows: int
    def __init__(self, size: _Optional[int] = ..., sizes: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., shard_starts: _Optional[_Iterable[int]] = ..., outputs_only: _Optional[bool] = ..., per_example: _Optional[bool] = ..., networks_hash: _Optional[str] = ..., shard_rows: _Optional[int] = ...) -> None: ...

class Shard(_message.Message):
    __slots__ = ("index", "row_start", "row_stop", "state", "worker", "attempt", "chunks_done", "network_start", "network_stop")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    ROW_STOP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_START_FIELD_NUMBER: _ClassVar[int]
    NETWORK_STOP_FIELD_NUMBER: _ClassVar[int]
    index: int
    row_start: int
    row_stop: int
    state: JobState
    worker: str
    attempt: int
    chunks_done: int
    network_start: int
    network_stop: int
    def __init__(self, index: _Optional[int] = ..., row_start: _Optional[int] = ..., row_stop: _Optional[int] = ..., state: _Optional[_Union[JobState, str]] = ..., worker: _Optional[str] = ..., attempt: _Optional[int] = ..., chunks_done: _Optional[int] = ..., network_start: _Optional[int] = ..., network_stop: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("name", "state", "request_id", "network_hash", "layout", "create_time", "start_time", "end_time", "error", "loss", "chunks_done", "shards", "attempt", "worker", "expire_time", "rows_done", "shards_done", "population_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_HASH_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ROWS_DONE_FIELD_NUMBER: _ClassVar[int]
    SHARDS_DONE_FIELD_NUMBER: _ClassVar[int]
    POPULATION_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: JobState
    request_id: str
    network_hash: str
    layout: ResultLayout
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    error: _status_pb2.Status
    loss: float
    chunks_done: int
    shards: _containers.RepeatedCompositeFieldContainer[Shard]
    attempt: int
    worker: str
    expire_time: _timestamp_pb2.Timestamp
    rows_done: int
    shards_done: int
    population_size: int
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., request_id: _Optional[str] = ..., network_hash: _Optional[str] = ..., layout: _Optional[_Union[ResultLayout, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., loss: _Optional[float] = ..., chunks_done: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[Shard, _Mapping]]] = ..., attempt: _Optional[int] = ..., worker: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rows_done: _Optional[int] = ..., shards_done: _Optional[int] = ..., population_size: _Optional[int] = ...) -> None: ...

class ResultChunk(_message.Message):
    __slots__ = ("seq", "field", "start", "stop", "row_start", "row_stop", "shard", "data")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    ROW_STOP_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    field: ResultField
    start: int
    stop: int
    row_start: int
    row_stop: int
    shard: int
    data: _tensor_pb2.Tensor
    def __init__(self, seq: _Optional[int] = ..., field: _Optional[_Union[ResultField, str]] = ..., start: _Optional[int] = ..., stop: _Optional[int] = ..., row_start: _Optional[int] = ..., row_stop: _Optional[int] = ..., shard: _Optional[int] = ..., data: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("state", "chunks_done", "time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    chunks_done: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., chunks_done: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("state", "chunk", "heartbeat", "done")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    state: Job
    chunk: ResultChunk
    heartbeat: Heartbeat
    done: Job
    def __init__(self, state: _Optional[_Union[Job, _Mapping]] = ..., chunk: _Optional[_Union[ResultChunk, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., done: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...
