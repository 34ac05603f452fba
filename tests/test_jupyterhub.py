"""JupyterHub on the real stack: the password guards it, a spawned server's kernel
reaches MLflow, S3, MLServer and the gateway, and JupyterLab renders through the hub."""
from __future__ import annotations

import re
import shutil

import pytest
import requests

from mlplatform.scripts.processes import free_port
from tests.hub import HubUser, run_in_kernel
from tests.support import assert_all_gone, recorded_pids

PASSWORD = "hub-test-password"  # a throw-away hub's, given through the environment only
USER = "alice"

KERNEL_CODE = r'''
import os, requests
import mlflow
from mlplatform.client.mlserver import create_request_to_mlserver_model, decode_answer
from mlplatform.pyfunc_models.registration import register

print("S3 keys:", sorted(k for k in os.environ if k.startswith("AWS_")))
registration = register("echo", os.environ["MLFLOW_TRACKING_URI"], alias="hub_test", force=True)
print("registered echo version", registration.version)
listed = mlflow.artifacts.list_artifacts(artifact_uri=registration.model_uri,
                                         tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
print("MLmodel through MLflow:", "MLmodel" in [item.path for item in listed])
answer = requests.post(os.environ["MLPLATFORM_MLSERVER_URL"] + "/v2/models/echo/infer",
                       json=create_request_to_mlserver_model({"a": 21}, "echo"), timeout=60)
print("MLServer:", decode_answer(answer))
print("gateway:", requests.post(os.environ["MLPLATFORM_GATEWAY_URL"] + "/forward",
                                json={"a": 4}, timeout=60).json())
'''


@pytest.fixture(scope="module")
def hub(served):
    env = {**served.env, "MLPLATFORM_JUPYTERHUB_PASSWORD": PASSWORD,
           "MLPLATFORM_JUPYTERHUB_USERS": USER,
           "MLPLATFORM_JUPYTERHUB_PORT": str(free_port()),
           "MLPLATFORM_JUPYTERHUB_PROXY_API_PORT": str(free_port()),
           "MLPLATFORM_JUPYTERHUB_HUB_PORT": str(free_port())}
    before = set(recorded_pids(served.state_dir))
    output = served.cli("up", "--jupyterhub", env=env).stdout
    assert "JupyterHub started at" in output
    hub_pids = set(recorded_pids(served.state_dir)) - before
    try:
        yield f"http://127.0.0.1:{env['MLPLATFORM_JUPYTERHUB_PORT']}"
    finally:
        served.cli("down", "jupyterhub", env=env)
        assert_all_gone(sorted(hub_pids))
        shutil.rmtree(served.state_dir / "jupyterhub", ignore_errors=True)


def test_without_a_password_the_hub_does_not_start(served):
    env = {k: v for k, v in served.env.items() if k != "MLPLATFORM_JUPYTERHUB_PASSWORD"}
    result = served.cli("up", "--jupyterhub", env=env, check=False)
    assert result.returncode == 1
    assert "MLPLATFORM_JUPYTERHUB_PASSWORD" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("users", ["", " , ", "Alice", "bob;rm"])
def test_without_an_explicit_list_of_users_the_hub_does_not_start(served, users):
    env = {**served.env, "MLPLATFORM_JUPYTERHUB_PASSWORD": PASSWORD,
           "MLPLATFORM_JUPYTERHUB_USERS": users}
    result = served.cli("up", "--jupyterhub", env=env, check=False)
    assert result.returncode == 1, result.stdout
    assert "set MLPLATFORM_JUPYTERHUB_USERS=alice,bob" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_hub_refuses_a_wrong_password_and_strangers(hub, served):
    assert requests.get(hub + "/hub/health", timeout=30).status_code == 200
    assert re.search(r"^jupyterhub\s+healthy", served.cli("status").stdout, re.MULTILINE)
    assert "JupyterHub is now running" in served.cli("logs", "jupyterhub", "-n", "400").stdout
    assert not HubUser(hub, USER).login("wrong-password")
    assert not HubUser(hub, "mallory").login(PASSWORD)  # not an allowed user


def test_a_spawned_server_reaches_mlflow_mlserver_and_the_gateway(hub, served):
    user = HubUser(hub, USER)
    assert user.login(PASSWORD)
    user.create_token()
    server = user.spawn()
    try:
        status, lines = run_in_kernel(server, user.token, KERNEL_CODE)
        assert status == "ok", lines
        assert any(line.startswith("registered echo version") for line in lines), lines
        assert "MLmodel through MLflow: True" in lines
        assert "S3 keys: []" in lines   # artifacts travel through MLflow's proxy
        assert "MLServer: {'result': 42}" in lines
        assert "gateway: {'result': 8}" in lines
        home = served.state_dir / "jupyterhub" / "users" / USER
        assert (home / "01-train-and-register.ipynb").exists()  # the notebooks were given
    finally:
        user.stop_server()


@pytest.mark.browser
def test_jupyterlab_through_the_hub_in_chromium(hub, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(hub + "/hub/login")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("input[type=submit], button[type=submit]")
        # the hub spawns the server and sends the browser on to JupyterLab
        page.wait_for_selector("text=02-serve-and-query.ipynb", timeout=180_000)
        assert f"/user/{USER}/lab" in page.url
        page.screenshot(path=str(tmp_path / "jupyterlab.png"))
        assert (tmp_path / "jupyterlab.png").stat().st_size > 10_000
    finally:
        page.close()
        user = HubUser(hub, USER)
        if user.login(PASSWORD):
            user.create_token()
            user.stop_server()
