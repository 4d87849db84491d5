"""streamer: real-time card-payment fraud scoring on Kafka, Redis and ONNX Runtime."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamer")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
