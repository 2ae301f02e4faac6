"""The generated flags.v1 stubs: one committed copy, in the SDK (see grpc_api/codegen.py)."""

from feature_flag_client._proto import flags_pb2, flags_pb2_grpc

__all__ = ["flags_pb2", "flags_pb2_grpc"]
