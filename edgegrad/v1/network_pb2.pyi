from edgegrad.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Network(_message.Message):
    __slots__ = ("inputs", "outputs", "node_ids", "activation_table", "activation_index", "biases", "src", "dst", "weights")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_TABLE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_INDEX_FIELD_NUMBER: _ClassVar[int]
    BIASES_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedScalarFieldContainer[str]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    activation_table: _containers.RepeatedScalarFieldContainer[str]
    activation_index: _tensor_pb2.Tensor
    biases: _tensor_pb2.Tensor
    src: _tensor_pb2.Tensor
    dst: _tensor_pb2.Tensor
    weights: _tensor_pb2.Tensor
    def __init__(self, inputs: _Optional[_Iterable[str]] = ..., outputs: _Optional[_Iterable[str]] = ..., node_ids: _Optional[_Iterable[str]] = ..., activation_table: _Optional[_Iterable[str]] = ..., activation_index: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., biases: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., src: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., dst: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class Networks(_message.Message):
    __slots__ = ("sizes", "id_table", "id_index", "outputs", "activation_table", "activation_index", "biases", "src", "dst", "weights", "levels")
    SIZES_FIELD_NUMBER: _ClassVar[int]
    ID_TABLE_FIELD_NUMBER: _ClassVar[int]
    ID_INDEX_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_TABLE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_INDEX_FIELD_NUMBER: _ClassVar[int]
    BIASES_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    sizes: _tensor_pb2.Tensor
    id_table: _containers.RepeatedScalarFieldContainer[str]
    id_index: _tensor_pb2.Tensor
    outputs: _tensor_pb2.Tensor
    activation_table: _containers.RepeatedScalarFieldContainer[str]
    activation_index: _tensor_pb2.Tensor
    biases: _tensor_pb2.Tensor
    src: _tensor_pb2.Tensor
    dst: _tensor_pb2.Tensor
    weights: _tensor_pb2.Tensor
    levels: _tensor_pb2.Tensor
    def __init__(self, sizes: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., id_table: _Optional[_Iterable[str]] = ..., id_index: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., outputs: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., activation_table: _Optional[_Iterable[str]] = ..., activation_index: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., biases: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., src: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., dst: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., levels: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class NetworkInfo(_message.Message):
    __slots__ = ("hash", "inputs", "nodes", "edges", "outputs")
    HASH_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    hash: str
    inputs: int
    nodes: int
    edges: int
    outputs: int
    def __init__(self, hash: _Optional[str] = ..., inputs: _Optional[int] = ..., nodes: _Optional[int] = ..., edges: _Optional[int] = ..., outputs: _Optional[int] = ...) -> None: ...
