"""Generated gRPC stubs of flags.v1 (see grpc_api/codegen.py in the server repository)."""
