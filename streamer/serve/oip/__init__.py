"""The Open Inference Protocol (v2, "KServe protocol") beside /v1: REST routes on the API's
port and a gRPC ``inference.GRPCInferenceService`` on ``STREAMER_SERVE_GRPC_PORT``, both on the
same batcher and kernel as /v1.

``grpc_predict_v2_pb2*.py`` are generated from ``grpc_predict_v2.proto``; after editing it::

    .venv/bin/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \\
        --grpc_python_out=. streamer/serve/oip/grpc_predict_v2.proto

tests/unit/serve/test_oip_stubs.py fails while the shipped modules differ from what that
command writes.
"""
