"""The shipped gRPC stubs are what grpcio-tools generates from the shipped proto.

The stubs are checked in (a wheel then needs no code generation at install time); this
test regenerates them with the command in ``streamer/serve/oip/__init__.py`` and compares,
so an edit to the proto without regenerating, or a hand edit of a stub, fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PACKAGE = Path("streamer/serve/oip")
STUBS = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def test_regenerating_the_stubs_from_the_proto_gives_the_shipped_files(tmp_path: Path) -> None:
    (tmp_path / PACKAGE).mkdir(parents=True)
    shutil.copy(REPO / PACKAGE / "grpc_predict_v2.proto", tmp_path / PACKAGE)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            "--python_out=.",
            "--pyi_out=.",
            "--grpc_python_out=.",
            str(PACKAGE / "grpc_predict_v2.proto"),
        ],
        cwd=tmp_path,
        check=True,
    )
    for name in STUBS:
        generated = (tmp_path / PACKAGE / name).read_text()
        shipped = (REPO / PACKAGE / name).read_text()
        assert generated == shipped, f"{name} differs: regenerate (streamer/serve/oip/__init__.py)"


def test_the_service_is_the_protocols() -> None:
    """In a process of its own: tritonclient.grpc registers the same ``inference.*`` names
    in protobuf's default pool, and a test worker may have imported it already."""
    probe = (
        "from streamer.serve.oip import grpc_predict_v2_pb2 as pb\n"
        "s = pb.DESCRIPTOR.services_by_name['GRPCInferenceService']\n"
        "print(s.full_name, *sorted(s.methods_by_name))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [
        "inference.GRPCInferenceService",
        "ModelInfer",
        "ModelMetadata",
        "ModelReady",
        "ServerLive",
        "ServerMetadata",
        "ServerReady",
    ]
