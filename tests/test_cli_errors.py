"""Bad input to the CLI: one clear line naming what is wrong, non-zero exit, nothing left half done."""
from __future__ import annotations

import shutil
import socket
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from mlplatform.scripts.processes import free_port
from tests.support import MLPLATFORM, stack_environment, stop, wait_for_http

pytestmark = pytest.mark.stack  # every test here runs mlplatform or gateway processes


def run(*args, env):
    return subprocess.run([MLPLATFORM, *args], env=env, capture_output=True, text=True,
                          timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_register_with_mlflow_unreachable_names_the_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = run("register", "echo", "--tracking-uri", url, env=stack_environment(tmp_path))
    assert_one_line_error(result, url, "unreachable")


def test_register_with_s3_unreachable_names_the_endpoint_and_registers_nothing(stack, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    env = {**stack.env, "MLFLOW_S3_ENDPOINT_URL": dead}
    registry = MlflowClient(tracking_uri=stack.mlflow_url)
    before = len(registry.search_model_versions("name='echo'"))
    result = run("register", "echo", "--force", env=env)
    assert_one_line_error(result, dead)
    assert len(registry.search_model_versions("name='echo'")) == before


@pytest.fixture()
def mlflow_with_dead_s3(tmp_path):
    """A real tracking server whose artifact store (S3) does not answer."""
    port = free_port()
    env = stack_environment(tmp_path)
    env.update({"MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
    process = subprocess.Popen(
        [MLPLATFORM.replace("mlplatform", "mlflow"), "server",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'db.sqlite'}", "--serve-artifacts",
         "--artifacts-destination", "s3://nowhere", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/health", timeout=120, require_ok=True)
        yield url
    finally:
        stop(process)


def test_upload_failure_leaves_no_registered_version(mlflow_with_dead_s3, tmp_path):
    """The preflight cannot see the server's S3; the failure surfaces at upload time."""
    env = stack_environment(tmp_path)
    result = run("register", "echo", "--tracking-uri", mlflow_with_dead_s3, env=env)
    assert_one_line_error(result, mlflow_with_dead_s3)
    versions = MlflowClient(tracking_uri=mlflow_with_dead_s3).search_model_versions("name='echo'")
    assert versions == []


def test_unknown_model_lists_the_known_ones(tmp_path):
    result = run("register", "nosuchmodel", env=stack_environment(tmp_path))
    assert_one_line_error(result, "nosuchmodel", "echo", "fraud")


def test_up_with_port_in_use_names_port_and_component(tmp_path):
    env = stack_environment(tmp_path)
    port = int(env["MLPLATFORM_MLFLOW_PORT"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = run("up", env=env)
    assert_one_line_error(result, f"port {port}", "MLflow tracking server")


def test_mlserver_config_with_a_model_not_in_the_registry(stack, tmp_path):
    result = run("mlserver-config", "--out", str(tmp_path / "cfg"), "--model", "ghost@champion",
                 env=stack.env)
    assert_one_line_error(result, "ghost@champion", "not in the registry")


def test_bad_model_reference_syntax(stack, tmp_path):
    result = run("mlserver-config", "--out", str(tmp_path / "cfg"), "--model", "bad name!",
                 env=stack.env)
    assert_one_line_error(result, "bad name!", "NAME@ALIAS")


def test_deploy_without_a_running_mlserver(tmp_path):
    result = run("deploy", env=stack_environment(tmp_path))
    assert_one_line_error(result, "MLServer is not running")


def test_invalid_setting_is_named(tmp_path):
    env = {**stack_environment(tmp_path), "MLPLATFORM_MLFLOW_PORT": "five-thousand"}
    result = run("status", env=env)
    assert_one_line_error(result, "mlflow_port")


def test_every_command_has_help():
    """Every command and subcommand the CLI defines (read from click itself, so a new
    command is covered the day it is added)."""
    import click

    from mlplatform.scripts.cli import main

    def paths(group: click.Group, prefix):
        yield prefix
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from paths(command, prefix + [name])
            else:
                yield prefix + [name]

    commands = list(paths(main, []))
    assert ["deploy"] in commands and ["token", "create"] in commands
    for command in commands:
        result = subprocess.run([MLPLATFORM, *command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "Usage:" in result.stdout, command


@pytest.mark.skipif(shutil.which("minio") is not None, reason="a real minio binary is installed")
def test_minio_up_without_a_binary_points_to_the_install_guide(tmp_path):
    env = {**stack_environment(tmp_path), "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    result = run("minio", "up", env=env)
    assert_one_line_error(result, "no `minio` binary", "infra/minio/README.md")


@pytest.mark.skipif(shutil.which("minio") is None, reason="needs a real minio binary")
def test_minio_up_runs_real_minio_with_the_bucket(tmp_path):
    env = {**stack_environment(tmp_path), "AWS_ACCESS_KEY_ID": "minio-test-user",
           "AWS_SECRET_ACCESS_KEY": "minio-test-secret", "MLPLATFORM_MINIO_PORT": str(free_port()),
           "MLPLATFORM_MINIO_CONSOLE_PORT": str(free_port())}
    try:
        result = run("minio", "up", env=env)
        assert result.returncode == 0, result.stderr
        endpoint = result.stdout.strip().splitlines()[-1].split("=", 1)[1]
        from mlplatform.scripts.s3 import s3_client
        buckets = s3_client(endpoint, "minio-test-user", "minio-test-secret").list_buckets()
        assert "mlplatform" in {b["Name"] for b in buckets["Buckets"]}
    finally:
        run("down", env=env)
