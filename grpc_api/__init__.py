"""gRPC sidecar: flags.v1.FlagService served by `manage.py grpcserver` (plain grpcio)."""
