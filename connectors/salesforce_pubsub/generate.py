"""Generate the Pub/Sub API gRPC stubs from the vendored ``pubsub_api.proto``.

The proto is Salesforce's public ``pubsub_api.proto`` (forcedotcom/pub-sub-api, commit
0ba470114fd8dac1e18a2c981efdafc87fcc69d1, CC0 1.0: ``LICENSE-pubsub_api.txt``). The stubs
are generated, never committed: ``scripts/bootstrap.sh`` runs this module after installing
the locked environment, and the wheel build runs it through ``hatch_build.py``. Both use
the grpcio-tools the lock (or the build requirements) pins, so the generated code always
matches the protobuf runtime installed beside it.

    python -m connectors.salesforce_pubsub.generate
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROTO = PACKAGE_DIR / "pubsub_api.proto"
GENERATED = ("pubsub_api_pb2.py", "pubsub_api_pb2_grpc.py", "pubsub_api_pb2.pyi")


def generate(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Run protoc (from grpcio-tools) so the stubs land beside the proto, importable as
    ``connectors.salesforce_pubsub.pubsub_api_pb2``; returns the files written."""
    from grpc_tools import protoc  # build/dev dependency only

    root = package_dir.parents[1]
    relative = (package_dir / PROTO.name).relative_to(root)
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"--python_out={root}",
        f"--pyi_out={root}",
        f"--grpc_python_out={root}",
        str(relative),
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed ({code}) generating stubs from {relative}")
    return [package_dir / name for name in GENERATED]


if __name__ == "__main__":
    for path in generate():
        print(f"generated {path}", file=sys.stderr)
