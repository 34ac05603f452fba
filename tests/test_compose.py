"""docker-compose.yml: validated against the Compose Specification, checked for the
platform's rules, and run for real with docker-compose.ci.yml (the stand-ins for the
images Docker Hub would give): up, a model registered through the MLflow container,
``/forward`` answered by the gateway container, the model pulled again from S3 after
MLServer's container restarts, Prometheus scraping the gateway, ``down -v`` leaving nothing.

The container tests need a Docker daemon; without one they are skipped with the reason
(``.ci/run`` installs and starts Docker, so CI always runs them).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from mlplatform.scripts import compose, images
from mlplatform.scripts.compose import ComposeError, ComposeProject
from tests.hub import HubUser, run_in_kernel
from tests.support import BIN

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = compose.compose_files(ci=True)
PUBLISHED = {"gateway", "mlflow", "minio", "prometheus", "grafana", "jupyterhub"}  # API, UIs, hub
BEYOND_THIS_HOST = {"gateway", "jupyterhub"}  # the UIs are published on 127.0.0.1 only
PLATFORM_ROLES = {"mlflow", "mlserver", "gateway"}


def compose_document() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_spec() -> Path:
    for candidate in (os.environ.get("MLPLATFORM_SCHEMAS"), ROOT.parent / "shared" / "schemas",
                      Path("/work/shared/schemas")):
        if candidate and (Path(candidate) / "compose" / "compose-spec.json").exists():
            return Path(candidate) / "compose" / "compose-spec.json"
    pytest.skip("the Compose Specification schema is not here (../shared/schemas)")


# ---------------------------------------------------------------- the file


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.ci.yml"])
def test_compose_files_follow_the_compose_specification(name):
    """The reference schema, and the one check-jsonschema vendors (two versions of the spec)."""
    for schema in (["--schemafile", str(compose_spec())], ["--builtin-schema", "vendor.compose-spec"]):
        result = subprocess.run([str(BIN / "check-jsonschema"), *schema, str(ROOT / name)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_publishes_only_the_gateway_and_the_uis_and_keeps_secrets_in_env():
    document = compose_document()
    services = document["services"]
    assert set(services) == {"minio", "feature-store", "mlflow", "mlserver", "gateway",
                             "prometheus", "grafana", "jupyterhub"}
    assert {name for name, service in services.items() if service.get("ports")} == PUBLISHED
    for name, service in services.items():
        for port in service.get("ports", []):
            local = "" if name in BEYOND_THIS_HOST else "127.0.0.1:"
            assert port.startswith(local + "${"), f"{name}: published port {port}"
        for dependency, rule in service.get("depends_on", {}).items():
            assert rule == {"condition": "service_healthy"}, (name, dependency)
            target = services[dependency]
            assert "healthcheck" in target or dependency in PLATFORM_ROLES, dependency
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source.startswith("./") or source in document["volumes"], (name, mount)
    for name in PLATFORM_ROLES | {"jupyterhub"}:
        assert services[name]["command"] == [name]
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in compose.SECRETS:
        assert f"${{{secret}:?" in text, f"{secret} must come from .env, required"
    dockerfile = (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    assert "\nUSER mlplatform" in dockerfile and "\nHEALTHCHECK " in dockerfile
    gateway = services["gateway"]["environment"]
    assert gateway["MLPLATFORM_GATEWAY_PUBLIC_PREDICT"] == "${MLPLATFORM_GATEWAY_PUBLIC_PREDICT:-false}"
    # S3 keys only in MLflow (the artifact proxy); no password inside a command
    for name, service in services.items():
        holds_keys = "AWS_SECRET_ACCESS_KEY" in (service.get("environment") or {})
        assert holds_keys == (name == "mlflow"), name
        assert "PASSWORD" not in " ".join(map(str, service.get("command") or [])), name
    assert "--app-name" not in text  # basic-auth is switched on by the role (container.py)
    assert services["mlflow"]["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith(
        "${MLFLOW_ADMIN_PASSWORD:?")
    assert "localhost:*" not in services["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"]


def test_env_example_names_every_secret_the_compose_file_requires():
    names = {line.split("=", 1)[0] for line in
             (ROOT / "infra" / "docker" / "env.example").read_text().splitlines()
             if line and not line.startswith("#")}
    assert set(compose.SECRETS) | {"JUPYTERHUB_USERS", "MINIO_ROOT_USER"} <= names


def test_docker_compose_config_accepts_the_files_and_refuses_a_missing_secret():
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    env = compose.environment()
    result = subprocess.run(["docker-compose", *COMPOSE_FILES, "config", "--quiet"],
                            env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    env.pop("POSTGRES_PASSWORD")
    missing = subprocess.run(["docker-compose", *COMPOSE_FILES, "config", "--quiet"],
                             env=env, capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in missing.stderr


@pytest.mark.parametrize("arguments, message", [
    (["nosuchrole"], "'nosuchrole' is neither a role (mlflow, mlserver, gateway, jupyterhub, health)"),
    (["gateway"], "the gateway role needs MLPLATFORM_GATEWAY_MLSERVER_URL"),
    (["mlserver"], "set MLFLOW_TRACKING_URI"),
    (["mlflow"], "set MLFLOW_S3_ENDPOINT_URL"),
    (["jupyterhub"], "JupyterHub needs a shared password: set MLPLATFORM_JUPYTERHUB_PASSWORD"),
])
def test_a_role_without_its_configuration_says_which_variable_to_set(
        tmp_path, arguments, message):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLPLATFORM_", "MLFLOW_", "AWS_"))}
    result = subprocess.run([str(BIN / "mlplatform"), "container", *arguments], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("users, shown", [("", "set MLPLATFORM_JUPYTERHUB_USERS=alice,bob"),
                                          ("ada,root", "not a user's account name: root")])
def test_the_hub_role_refuses_to_start_without_an_explicit_list_of_users(tmp_path, users, shown):
    env = {**{key: value for key, value in os.environ.items()
              if not key.startswith(("MLPLATFORM_", "MLFLOW_", "AWS_"))},
           "MLPLATFORM_JUPYTERHUB_PASSWORD": "a-password", "MLPLATFORM_JUPYTERHUB_USERS": users}
    result = subprocess.run([str(BIN / "mlplatform"), "container", "jupyterhub"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and shown in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_the_health_check_reports_unhealthy_until_a_role_announced_itself(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run([str(BIN / "mlplatform"), "container", "health"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1


def test_the_build_context_holds_what_the_dockerfiles_copy_and_the_ca_bundle(tmp_path):
    images.write_context(tmp_path / "context.tar")
    with tarfile.open(tmp_path / "context.tar") as context:
        members = context.getmembers()
    names = {member.name for member in members}
    assert {"infra/docker/Dockerfile", "scripts/container.py", "constraints.txt",
            "notebooks/01-train-and-register.ipynb",
            "infra/jupyterhub/jupyterhub_config.py"} <= names
    assert not [name for name in names if name.startswith((".venv", ".git/", "tests/"))
                or "__pycache__" in name or "node_modules" in name]
    assert {member.mtime for member in members} == {0}  # same files, same layer cache
    if images.CA_BUNDLE.exists():
        assert "infra/docker/extras/ca-certificates.crt" in names


# ---------------------------------------------------------------- for real


@pytest.fixture(scope="module")
def platform_images():
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    if not images.daemon_answers():
        pytest.skip("no Docker daemon answers (`.ci/run` installs and starts one)")
    return images.build_all(ci=True, report=lambda line: None)


@pytest.fixture(scope="module")
def compose_stack(platform_images):
    stack = ComposeProject(f"mlplatform-test-{secrets.token_hex(4)}")
    try:
        stack.up()
        yield stack
    except ComposeError:
        print(stack.logs())
        raise
    finally:
        stack.down()


def wait_for(check, what: str, stack: ComposeProject, timeout: float = 180):
    """Poll until ``check()`` is truthy; the deadline only bounds a broken stack."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout:.0f}s; logs:\n{stack.logs()}")


@pytest.fixture(scope="module")
def predict_token(compose_stack):
    return compose_stack.token("tests", "predict")


def forward_echo(stack: ComposeProject, token: str):
    answer = requests.post(stack.gateway_url + "/forward", json={"a": 21}, timeout=30,
                           headers={"Authorization": f"Bearer {token}"})
    return answer if answer.status_code == 200 else None


def test_compose_mlflow_refuses_strangers_and_serves_each_component_its_account(compose_stack):
    """Published on 127.0.0.1 only, and even there every call needs an account; MLServer's
    account reads models and can change none."""
    stack = compose_stack
    api = stack.url("MLFLOW_PORT", "/api/2.0/mlflow/registered-models/search")
    wait_for(lambda: requests.get(stack.url("MLFLOW_PORT", "/health"), timeout=10).ok,
             "MLflow answered", stack)
    assert requests.get(api, timeout=30).status_code == 401
    assert requests.get(api, auth=("admin", "wrong-password"), timeout=30).status_code == 401
    admin = ("admin", stack.env["MLFLOW_ADMIN_PASSWORD"])
    assert requests.get(api, auth=admin, timeout=30).status_code == 200
    reader = ("mlserver", stack.env["MLFLOW_MLSERVER_PASSWORD"])
    assert requests.get(api, auth=reader, timeout=30).status_code == 200
    registry = stack.url("MLFLOW_PORT", "/api/2.0/mlflow")
    made = requests.post(f"{registry}/registered-models/create", json={"name": "guarded"},
                         auth=admin, timeout=30)
    assert made.status_code == 200, made.text
    # MLflow lets any account create models of its own; none but the owner and admins may
    # change one: MLServer's account can neither add a version nor move an alias
    version = requests.post(f"{registry}/model-versions/create", auth=reader, timeout=30,
                            json={"name": "guarded", "source": "s3://elsewhere/model"})
    assert version.status_code == 403, version.text
    alias = requests.post(f"{registry}/registered-models/alias", auth=reader, timeout=30,
                          json={"name": "guarded", "alias": "champion", "version": "1"})
    assert alias.status_code == 403, alias.text
    tag = requests.post(f"{registry}/registered-models/set-tag", auth=reader, timeout=30,
                        json={"name": "guarded", "key": "mlplatform.served.compose", "value": "9"})
    assert tag.status_code == 403, tag.text
    published = stack.run("port", "mlflow", "5000").stdout.strip()
    assert published.startswith("127.0.0.1:"), published


def test_compose_stack_registers_serves_and_answers_through_the_gateway(compose_stack,
                                                                        predict_token):
    stack = compose_stack
    health = requests.get(stack.gateway_url + "/health", timeout=10)
    assert health.status_code == 200, health.text
    # a model registered through the MLflow container, with the platform's own CLI
    stack.register("echo")
    deployed = stack.deploy(["echo@champion"])
    assert "echo/1: " in deployed, deployed
    # predict routes are closed in compose: a token with the predict scope
    closed = requests.post(stack.gateway_url + "/forward", json={"a": 21}, timeout=30)
    assert closed.status_code == 401, closed.text
    answer = wait_for(lambda: forward_echo(stack, predict_token), "/forward answered", stack)
    assert answer.headers["X-Model-Name"] == "echo" and answer.headers["X-Model-Version"] == "1"
    assert answer.json() == {"result": 42}
    # the artifacts live in S3, not in the image: a new MLServer container pulls them again
    stack.run("restart", "mlserver")
    answer = wait_for(lambda: forward_echo(stack, predict_token),
                      "/forward answered after MLServer restarted", stack)
    assert answer.headers["X-Model-Version"] == "1"
    # what MLServer read: a models:/ URI, resolved through MLflow (no path into the image)
    settings = stack.run("exec", "-T", "mlserver", "cat",
                         "/srv/models/echo/1/model-settings.json").stdout
    assert json.loads(settings)["parameters"]["uri"] == "models:/echo/1"


def test_compose_prometheus_scrapes_the_gateway_and_mlserver(compose_stack):
    url = compose_stack.url("PROMETHEUS_PORT", "/api/v1/query")

    def scraped():
        result = requests.get(url, params={"query": "up"}, timeout=10).json()["data"]["result"]
        jobs = {series["metric"]["job"]: series["value"][1] for series in result}
        return jobs if jobs.get("mlplatform-gateway") == "1" and jobs.get("mlserver") == "1" \
            else None

    assert wait_for(scraped, "Prometheus scraped the gateway and MLServer", compose_stack)


HUB_KERNEL_CODE = """
import os, pwd, requests
from mlflow import MlflowClient
answer = requests.post(os.environ["MLPLATFORM_GATEWAY_URL"] + "/forward", json={"a": 5}, timeout=30,
                       headers={"Authorization": "Bearer TOKEN"})
print("gateway", answer.status_code, answer.json())
print("mlflow", requests.get(os.environ["MLFLOW_TRACKING_URI"] + "/health", timeout=30).status_code)
print("models", [m.name for m in MlflowClient().search_registered_models()])
print("account", os.environ["MLFLOW_TRACKING_USERNAME"])
print("os user", pwd.getpwuid(os.getuid()).pw_name, os.getuid() != 0)
print("S3 keys", sorted(k for k in os.environ if k.startswith("AWS_")))
print("hub secret readable", os.access("/var/lib/mlplatform/jupyterhub/cookie_secret", os.R_OK))
print("notebooks", sorted(name for name in os.listdir(".") if name.endswith(".ipynb"))[:1])
"""


def test_compose_jupyterhub_notebooks_reach_the_platform_by_service_name(compose_stack,
                                                                         predict_token):
    hub = compose_stack.url("JUPYTERHUB_PORT")
    wait_for(lambda: requests.get(hub + "/hub/health", timeout=10).status_code == 200,
             "JupyterHub answered", compose_stack)
    assert not HubUser(hub, "ada").login("wrong-password")
    assert not HubUser(hub, "mallory").login(compose_stack.env["JUPYTERHUB_PASSWORD"])
    user = HubUser(hub, "ada")
    assert user.login(compose_stack.env["JUPYTERHUB_PASSWORD"])
    user.create_token()
    server = user.spawn()
    try:
        status, lines = run_in_kernel(server, user.token,
                                      HUB_KERNEL_CODE.replace("TOKEN", predict_token))
    finally:
        user.stop_server()
    assert status == "ok", lines
    assert "gateway 200 {'result': 10}" in lines, lines   # echo, deployed by the test above
    assert "mlflow 200" in lines and "notebooks ['01-train-and-register.ipynb']" in lines, lines
    models = next(line for line in lines if line.startswith("models "))
    assert "'echo'" in models and "account ada" in lines, lines  # with her own account
    assert "os user ada True" in lines and "S3 keys []" in lines, lines  # never root, no keys
    assert "hub secret readable False" in lines, lines


def test_compose_down_removes_every_container_volume_and_network(compose_stack):
    """Runs last in this module: ``down -v`` on the stack the tests above used."""
    assert compose_stack.leftovers()
    compose_stack.down(check=True)
    assert compose_stack.leftovers() == []
