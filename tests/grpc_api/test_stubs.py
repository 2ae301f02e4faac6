"""The committed stubs are what the proto generates (one copy, in the SDK, used by the server)."""

from grpc_api import codegen, stubs


def test_committed_stubs__match_a_fresh_generation(tmp_path):
    produced = codegen.generate(tmp_path)
    stale = [name for name, text in produced.items()
             if (codegen.SDK_PROTO_DIR / name).read_text() != text]
    assert not stale, f"stale generated stubs {stale}: run `.venv/bin/python -m grpc_api.codegen`"


def test_server_uses_the_sdk_stubs_and_they_import_as_a_package():
    from feature_flag_client._proto import flags_pb2, flags_pb2_grpc

    assert stubs.flags_pb2 is flags_pb2 and stubs.flags_pb2_grpc is flags_pb2_grpc
    assert flags_pb2_grpc.flags_dot_v1_dot_flags__pb2 is flags_pb2  # relative import, not the `flags` app
    service = flags_pb2.DESCRIPTOR.services_by_name["FlagService"]
    assert service.full_name == "flags.v1.FlagService"
    assert [m.name for m in service.methods] == ["Evaluate", "EvaluateBulk", "WatchFlags", "Track"]
    assert service.methods_by_name["WatchFlags"].server_streaming


def test_stubs_demand_only_the_grpcio_floor_pyproject_declares():
    import tomllib

    from feature_flag_client._proto import flags_pb2_grpc

    dependencies = tomllib.loads((codegen.REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"grpcio>={codegen.GRPCIO_FLOOR},<2" in dependencies
    assert flags_pb2_grpc.GRPC_GENERATED_VERSION == codegen.GRPCIO_FLOOR
