"""The MLflow download cache's server key: normalised, never holding credentials."""

from __future__ import annotations

from streamer.model.mlflow_registry import cache_root, server_key


def test_the_cache_is_keyed_by_server_without_credentials() -> None:
    plain = server_key("http://127.0.0.1:5000")
    assert server_key("http://alice:s3cret@127.0.0.1:5000/") == plain
    assert server_key("HTTP://127.0.0.1:5000") == plain
    assert server_key("http://127.0.0.1:5001") != plain
    assert server_key("https://mlflow.example:443") == server_key("https://mlflow.example")
    assert "s3cret" not in server_key("http://alice:s3cret@host:1")
    assert cache_root().name == "mlflow-models"
