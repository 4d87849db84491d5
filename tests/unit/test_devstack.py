"""The launcher's pure parts (broker, registry and MLflow command lines, .dev/env, flags) and
its process-group handling, on throwaway shell processes instead of servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streamer.dev.devstack import __main__ as devstack_main
from streamer.dev.devstack import stack
from streamer.dev.devstack.kafka import server_properties
from streamer.dev.devstack.mlflow import server_command, server_env, venv_dir
from streamer.dev.devstack.processes import (
    ServiceError,
    free_port,
    group_members,
    pid_alive,
    spawn,
    stop_process,
)
from streamer.dev.devstack.schema_registry import (
    SchemaRegistry,
    artifact,
    find_runner,
    jvm_options,
)

REPO = Path(__file__).resolve().parents[2]


def test_broker_settings_fit_a_single_node_test_broker(tmp_path: Path) -> None:
    props = server_properties(tmp_path / "data", 9092, 9093)

    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "1", key


def test_addresses_from_the_environment_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setattr(stack, "docker_available", lambda: pytest.fail("must not probe Docker"))

    with stack.acquire() as endpoints:
        assert (endpoints.kafka_bootstrap, endpoints.redis_url, endpoints.source) == (
            "broker:9092",
            "redis://cache:6379/0",
            "env",
        )


def test_half_an_environment_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.delenv("REDIS_URL", raising=False)

    with pytest.raises(RuntimeError, match="REDIS_URL"), stack.acquire():
        pass


def test_free_port_is_bindable_and_pid_alive_knows_the_living() -> None:
    import os
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert pid_alive(os.getpid())
    assert not pid_alive(2**22 + 12345)


# --- schema registry (Apicurio) ------------------------------------------------------------


def test_registry_binds_loopback_only_both_ports() -> None:
    options = jvm_options(8081, 9001)

    assert "-Dquarkus.http.host=127.0.0.1" in options
    assert "-Dquarkus.http.port=8081" in options
    # Without these Quarkus binds its management interface on 0.0.0.0:9000.
    assert "-Dquarkus.management.host=127.0.0.1" in options
    assert "-Dquarkus.management.port=9001" in options
    assert not any("DATASOURCE" in o for o in options), "in-memory unless asked to persist"


def test_a_persistent_registry_keeps_its_database_in_its_data_dir(tmp_path: Path) -> None:
    options = jvm_options(8081, 9001, data_dir=tmp_path / "data")

    assert f"-DREGISTRY_DATASOURCE_URL=jdbc:h2:file:{tmp_path}/data/registry" in options


def test_registry_artifact_and_url() -> None:
    assert artifact("2.6.13.Final") == "io.apicurio:apicurio-registry-app:2.6.13.Final:tar.gz:all"
    assert SchemaRegistry(Path("/x"), port=8081).url == "http://127.0.0.1:8081/apis/ccompat/v7"


@pytest.mark.parametrize(
    "layout",
    ["apicurio-registry-app-2.6.13.Final-runner.jar", "quarkus-app/quarkus-run.jar"],
)
def test_the_runnable_jar_is_found_in_either_release_layout(tmp_path: Path, layout: str) -> None:
    (tmp_path / layout).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / layout).write_bytes(b"PK")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "other.jar").write_bytes(b"PK")

    assert find_runner(tmp_path) == tmp_path / layout


def test_an_unpacked_release_without_a_runner_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="remove it to fetch Apicurio again"):
        find_runner(tmp_path)


# --- MLflow ---------------------------------------------------------------------------------


def test_mlflow_server_command_is_loopback_sqlite_and_served_artifacts(tmp_path: Path) -> None:
    cmd = server_command(Path("/venv/bin/mlflow"), tmp_path, 5000)

    assert cmd[:2] == ["/venv/bin/mlflow", "server"]
    args = dict(zip(cmd[2::2], cmd[3::2], strict=True))
    assert args == {
        "--backend-store-uri": f"sqlite:///{tmp_path}/mlflow.db",
        "--artifacts-destination": str(tmp_path / "artifacts"),
        "--host": "127.0.0.1",
        "--port": "5000",
        "--workers": "1",
    }


def test_mlflow_server_ignores_client_settings_and_runs_no_job_workers() -> None:
    env = server_env({"PATH": "/bin", "MLFLOW_TRACKING_URI": "http://elsewhere:5000"})

    assert env["PATH"] == "/bin"
    assert "MLFLOW_TRACKING_URI" not in env
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_the_mlflow_venv_lives_in_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STREAMER_DEV_CACHE", str(tmp_path))

    assert venv_dir("3.17.2") == tmp_path / "mlflow-venv-3.17.2"


# --- dev-up ---------------------------------------------------------------------------------


def test_dev_env_exports_streamer_names_and_plain_names() -> None:
    text = devstack_main.env_lines(
        {
            "kafka": "127.0.0.1:1",
            "redis": "redis://127.0.0.1:2/0",
            "schema-registry": "http://127.0.0.1:3/apis/ccompat/v7",
            "mlflow": "http://127.0.0.1:4",
        }
    )

    assert text == (
        "export STREAMER_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1\n"
        "export STREAMER_REDIS_URL=redis://127.0.0.1:2/0\n"
        "export STREAMER_SCHEMA_REGISTRY_URL=http://127.0.0.1:3/apis/ccompat/v7\n"
        "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1 REDIS_URL=redis://127.0.0.1:2/0"
        " MLFLOW_TRACKING_URI=http://127.0.0.1:4\n"
    )


def test_a_redis_cluster_stack_tells_streamer_to_speak_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = devstack_main.env_lines({"redis": "redis://127.0.0.1:2/0"}, redis_cluster=True)
    assert "export STREAMER_REDIS_MODE=cluster\n" in text
    seen: list[bool] = []

    def up(_: list[str], *, redis_cluster: bool = False) -> int:
        seen.append(redis_cluster)
        return 0

    monkeypatch.setattr(devstack_main, "up", up)
    assert devstack_main.main(["up", "--redis-cluster", "--no-mlflow"]) == 0
    assert devstack_main.main(["up"]) == 0
    assert seen == [True, False]


def test_a_skipped_service_leaves_no_variable_behind() -> None:
    text = devstack_main.env_lines({"kafka": "127.0.0.1:1", "redis": "redis://127.0.0.1:2/0"})

    assert "SCHEMA_REGISTRY" not in text
    assert "MLFLOW" not in text


@pytest.mark.parametrize(
    ("flags", "wanted"),
    [
        ([], ["kafka", "redis", "schema-registry", "mlflow"]),
        (["--no-mlflow"], ["kafka", "redis", "schema-registry"]),
        (["--no-schema-registry", "--no-kafka"], ["redis", "mlflow"]),
    ],
)
def test_up_flags_choose_the_services(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], wanted: list[str]
) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(devstack_main, "up", lambda services, **_: seen.append(services) or 0)

    assert devstack_main.main(["up", *flags]) == 0
    assert seen == [wanted]


def test_status_when_down_exits_1_and_skipping_everything_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    flags = ["--no-kafka", "--no-redis", "--no-schema-registry", "--no-mlflow"]

    assert devstack_main.main(["status"]) == 1
    assert devstack_main.main(["up", *flags]) == 2
    assert "not running" in capsys.readouterr().out
    assert not (tmp_path / ".dev" / "env").exists()


# --- process groups -------------------------------------------------------------------------


_OWNER = """
import sys
from pathlib import Path
from streamer.dev.devstack.processes import spawn
proc = spawn(
    ["bash", "-c", "sleep 300 & sleep 300 & wait"],
    Path(sys.argv[1]),
    die_with_parent=True,
    forks_workers=True,
)
print(proc.pid, flush=True)
sys.stdin.read()
"""


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_killed_owner_takes_a_forking_server_and_all_its_workers_along(tmp_path: Path) -> None:
    """PDEATHSIG reaches one process; the guard passes it on to the workers it forked."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path / "log")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert owner.stdout is not None
    group = int(owner.stdout.readline())
    assert _wait_for(lambda: len(group_members(group)) == 4, 10)  # guard, bash, two sleeps

    owner.send_signal(signal.SIGKILL)
    owner.wait(10)

    assert _wait_for(lambda: not group_members(group), 15), group_members(group)


def test_stop_process_also_stops_workers_that_outlive_their_leader(tmp_path: Path) -> None:
    proc = spawn(
        ["bash", "-c", "trap '' TERM; (trap '' TERM; exec sleep 300) & exit 0"],
        tmp_path / "log",
        die_with_parent=False,
    )
    assert _wait_for(lambda: proc.poll() is not None and len(group_members(proc.pid)) == 1, 10)

    stop_process(proc, grace=0.5)

    assert not group_members(proc.pid)


class _FakeService:
    def __init__(self, fail: bool) -> None:
        self.fail, self.stopped = fail, False

    def start(self) -> None:
        if self.fail:
            raise ServiceError("redis-server is not installed: apt-get install redis-server")

    def stop(self) -> None:
        self.stopped = True


def test_a_failed_dev_up_stops_what_did_start_and_says_why_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    fakes = {"kafka": _FakeService(False), "redis": _FakeService(True)}
    monkeypatch.setattr(devstack_main, "make_services", lambda workdir, wanted, **_: fakes)

    assert devstack_main.main(["up"]) == 1

    assert all(f.stopped for f in fakes.values())
    err = capsys.readouterr().err
    assert err == "dev-up failed: redis-server is not installed: apt-get install redis-server\n"
    assert not (tmp_path / ".dev" / "env").exists()
