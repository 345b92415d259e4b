"""The wire codec: networks, tensors, result chunks and uploads to and from the protobuf messages."""
