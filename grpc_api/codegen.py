"""Generate the Python stubs of protos/flags/v1/flags.proto.

The one committed copy lives in the SDK (`feature_flag_client._proto`) so the SDK's gRPC client and
this server share it; `grpc_api.stubs` re-exports it. Regenerate after editing the proto:

    .venv/bin/python -m grpc_api.codegen

protoc writes `from flags.v1 import flags_pb2`, which would resolve to the Django `flags` app here:
the import is rewritten to a relative one so the stubs import as a package.
"""

import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent / "protos"
PROTO = "flags/v1/flags.proto"
REPO = Path(__file__).resolve().parent.parent
SDK_PROTO_DIR = REPO / "python-sdk" / "feature_flag_client" / "_proto"
GENERATED = ("flags_pb2.py", "flags_pb2.pyi", "flags_pb2_grpc.py")
# The stubs refuse to import on a grpcio older than the grpcio-tools that wrote them; stamp the
# floor pyproject.toml declares instead, so a newer grpcio-tools release writes the same file.
GRPCIO_FLOOR = "1.85.1"
HEADER = "# Generated from grpc_api/protos/flags/v1/flags.proto by `python -m grpc_api.codegen`. Do not edit.\n"


def generate(out_dir):
    """Write the generated modules (GENERATED) into out_dir; returns {name: text}."""
    from grpc_tools import protoc

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        well_known = str(resources.files("grpc_tools") / "_proto")
        code = protoc.main([
            "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
            f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", PROTO,
        ])
        if code != 0:
            raise RuntimeError(f"protoc failed with exit code {code}")
        produced = {}
        for name in GENERATED:
            text = (Path(tmp) / "flags" / "v1" / name).read_text()
            text = text.replace("from flags.v1 import flags_pb2", "from . import flags_pb2")
            text = re.sub(r"^GRPC_GENERATED_VERSION = '[^']*'$",
                          f"GRPC_GENERATED_VERSION = '{GRPCIO_FLOOR}'", text, flags=re.M)
            produced[name] = HEADER + text
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in produced.items():
        (out_dir / name).write_text(text)
    return produced


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    target = Path(argv[0]) if argv else SDK_PROTO_DIR
    generate(target)
    init = target / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated gRPC stubs of flags.v1 (see grpc_api/codegen.py)."""\n')
    print(f"wrote {', '.join(GENERATED)} to {target}")


if __name__ == "__main__":
    main()
