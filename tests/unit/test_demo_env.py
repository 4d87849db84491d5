"""The demo's streamer gets a clean environment: nothing from the user's shell configures it
unless DEMO_USE_ENV=1 says so."""

from __future__ import annotations

from streamer.dev.demo import child_environment

USER = {
    "PATH": "/usr/bin",
    "HOME": "/home/u",
    "STREAMER_MAX_BATCH_SIZE": "garbage",
    "STREAMER_REDIS_URL": "redis://elsewhere:6379/0",
    "KAFKA_BOOTSTRAP_SERVERS": "prod:9092",
    "REDIS_URL": "redis://prod:6379/0",
}
DEMO = {"STREAMER_INPUT_TOPIC": "demo.transactions", "STREAMER_METRICS_PORT": "40123"}


def test_users_streamer_and_cluster_variables_are_dropped() -> None:
    env = child_environment(USER, DEMO, use_env=False)
    assert env == {"PATH": "/usr/bin", "HOME": "/home/u", **DEMO}


def test_demo_use_env_keeps_them_but_the_demo_settings_win() -> None:
    env = child_environment({**USER, "STREAMER_METRICS_PORT": "9464"}, DEMO, use_env=True)
    assert env["STREAMER_MAX_BATCH_SIZE"] == "garbage"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "prod:9092"
    assert env["STREAMER_METRICS_PORT"] == "40123"
