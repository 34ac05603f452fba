"""Async jobs and tokens on the gateway: submit, follow, fetch; survive a restart; 401s."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from mlplatform.client.gateway import BadRequest, GatewayClient, Unauthorized
from mlplatform.scripts.processes import free_port
from tests.support import neomaril_async_folder, stop, wait_for_http

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

SLOW_APP = '''
import os, time

def score(data_path, model_path):
    time.sleep(float(open(model_path + "/seconds.txt").read()))
    source = os.path.join(data_path, os.environ["inputFileName"])
    output = os.path.join(data_path, "done.txt")
    with open(source) as f, open(output, "w") as out:
        out.write(f.read().upper())
    return output
'''


@pytest.fixture(scope="module")
def jobs_stack(served, tmp_path_factory):
    slow = neomaril_async_folder(tmp_path_factory.mktemp("slow_async"), SLOW_APP,
                                 "seconds.txt", "6")
    served.cli("import", str(EXAMPLES / "mmf_delivery"))
    served.cli("import", str(slow), "--name", "slow_async")
    served.cli("deploy")
    return served


@pytest.fixture(scope="module")
def token(jobs_stack):
    output = jobs_stack.cli("token", "create", "--group", "analysts", "--scope", "jobs",
                            "--scope", "predict").stdout
    assert "shown once" in output
    return output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def gateway(jobs_stack, token):
    with GatewayClient(jobs_stack.gateway_url, token=token) as client:
        yield client


def test_job_round_trip(gateway, tmp_path):
    submitted = gateway.submit_job(EXAMPLES / "mmf_delivery" / "orders.csv", "mmf_delivery",
                                   "Batch scoring")
    assert submitted["status"] == "Requested" and submitted["id"]
    finished = gateway.wait_job(submitted["id"], timeout=120)
    assert finished["status"] == "Succeeded", finished
    assert finished["created_at"] <= finished["started_at"] <= finished["finished_at"]
    result = gateway.job_result(submitted["id"], tmp_path)
    assert result.name == "orders_scored.csv"
    assert result.read_text().splitlines()[1] == "A1,2.0,1,19.8"


@pytest.mark.parametrize("name", ["данные.csv", "😀.csv"])
def test_a_result_named_in_any_language_downloads_under_its_name(gateway, tmp_path, name):
    """Was a 500 (an HTTP header cannot carry the raw name): RFC 5987 ``filename*``."""
    orders = (EXAMPLES / "mmf_delivery" / "orders.csv").read_bytes()
    job = gateway.submit_job(orders, "mmf_delivery", "Batch scoring", filename=name)
    assert gateway.wait_job(job["id"], timeout=120)["status"] == "Succeeded"
    result = gateway.job_result(job["id"], tmp_path)
    assert result.name == name.replace(".csv", "_scored.csv")
    assert result.read_text().splitlines()[1] == "A1,2.0,1,19.8"


@pytest.mark.parametrize("name, expected", [
    ("..", "is not a file name"),
    ("x" * 300 + ".csv", "bytes long; at most 255"),
])
def test_an_upload_name_that_is_not_a_file_name_is_400(gateway, name, expected):
    with pytest.raises(BadRequest, match=expected):
        gateway.submit_job(b"distance_km,items\n1,1\n", "mmf_delivery", "Batch scoring",
                           filename=name)


def test_job_inputs_and_outputs_live_in_the_artifact_store(jobs_stack, gateway):
    from mlplatform.scripts.s3 import s3_client
    from tests.support import S3_KEY, S3_SECRET

    job = gateway.submit_job(b"distance_km,items\n1,1\n", "mmf_delivery", "Batch scoring",
                             filename="one.csv")
    assert gateway.wait_job(job["id"], timeout=120)["status"] == "Succeeded"
    keys = {o["Key"] for o in s3_client(jobs_stack.s3.endpoint, S3_KEY, S3_SECRET)
            .list_objects_v2(Bucket=jobs_stack.s3.bucket, Prefix=f"jobs/{job['id']}/")["Contents"]}
    assert keys == {f"jobs/{job['id']}/input/one.csv", f"jobs/{job['id']}/output/one_scored.csv"}


def test_failed_job_records_the_error(gateway):
    job = gateway.submit_job(b"no,such,columns\n1,2,3\n", "mmf_delivery", "Batch scoring",
                             filename="bad.csv")
    finished = gateway.wait_job(job["id"], timeout=120)
    assert finished["status"] == "Failed" and "lacks column" in finished["error"]
    response = requests.get(f"{gateway._http.base_url}/jobs/{job['id']}/result",
                            headers=gateway._http.headers)
    assert response.status_code == 409 and response.json()["status"] == "Failed"


@pytest.mark.parametrize("model, target, field", [
    ("mmf_delivery", "Scoring", "target"),        # a JSON target: not a job
    ("mmf_delivery", "Nope", "target"),
    ("echo", "anything", "model"),                # not an imported folder
    ("no_such_model", "x", "model"),
])
def test_job_for_an_unknown_or_json_target_is_400(gateway, model, target, field):
    with pytest.raises(BadRequest) as raised:
        gateway.submit_job(b"a\n1\n", model, target, filename="x.csv")
    assert raised.value.body["field"] == field


def test_unknown_job_is_404_and_other_groups_cannot_see_a_job(jobs_stack, gateway):
    assert requests.get(f"{jobs_stack.gateway_url}/jobs/nope",
                        headers=gateway._http.headers).status_code == 404
    job = gateway.submit_job(b"distance_km,items\n1,1\n", "mmf_delivery", "Batch scoring",
                             filename="g.csv")
    other = jobs_stack.cli("token", "create", "--group", "others", "--scope",
                           "jobs").stdout.strip().splitlines()[-1]
    response = requests.get(f"{jobs_stack.gateway_url}/jobs/{job['id']}",
                            headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 404


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer mlp_wrong"},
                                     {"Authorization": "Basic abc"}])
def test_write_routes_need_a_valid_token(jobs_stack, headers):
    response = requests.post(f"{jobs_stack.gateway_url}/jobs", headers=headers,
                             files={"file": ("a.csv", b"a\n1\n")},
                             data={"model": "mmf_delivery", "target": "Batch scoring"})
    assert response.status_code == 401 and response.json()["message"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    with pytest.raises(Unauthorized):
        GatewayClient(jobs_stack.gateway_url).job_status("x")


def test_revoked_token_is_refused(jobs_stack):
    created = jobs_stack.cli("token", "create", "--group", "temp", "--scope", "jobs").stdout.splitlines()
    token_id, secret = created[0].split()[1], created[-1]
    jobs_stack.cli("token", "revoke", token_id)
    assert "revoked" in jobs_stack.cli("token", "list").stdout
    response = requests.get(f"{jobs_stack.gateway_url}/jobs/x",
                            headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401


def test_tokens_never_reach_logs_or_the_database(jobs_stack, token):
    logs = "".join(p.read_text(errors="ignore") for p in (jobs_stack.state_dir / "logs").glob("*"))
    assert token not in logs
    assert token.encode() not in (jobs_stack.state_dir / "gateway.db").read_bytes()


def test_closed_predict_routes_need_a_token(jobs_stack, token, tmp_path):
    port = free_port()
    env = {**jobs_stack.env, "MLPLATFORM_GATEWAY_PUBLIC_PREDICT": "false",
           "MLPLATFORM_GATEWAY_MLSERVER_URL": jobs_stack.mlserver_url,
           "MLPLATFORM_GATEWAY_TRACKING_URI": jobs_stack.mlflow_url,
           "MLPLATFORM_GATEWAY_DATABASE_URL": f"sqlite:///{jobs_stack.state_dir / 'gateway.db'}",
           "MLPLATFORM_GATEWAY_JOBS_STORAGE": str(tmp_path / "jobs")}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "mlplatform.gateway.app:app", "--port",
                                str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/health", timeout=60, require_ok=True)
        assert requests.post(url + "/forward", json={"a": 1}).status_code == 401
        assert requests.post(url + "/predict", json={}).status_code == 401
        assert requests.get(url + "/models").status_code == 401  # follows the predict routes
        assert requests.get(url + "/metadata").status_code == 401
        answer = requests.post(url + "/forward", json={"a": 1},
                               headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and answer.json() == {"result": 2}
        assert requests.get(url + "/health").status_code == 200
    finally:
        stop(process)


def test_a_second_gateway_on_the_same_database_runs_no_job_twice(jobs_stack, gateway, tmp_path):
    """The hardening issue's bug: a gateway starting on the job database re-queued the job
    another gateway was running.  With leases the second one leaves it alone."""
    from mlplatform.gateway.store import Store

    job = gateway.submit_job(b"twice?\n", "slow_async", "score", filename="words.txt")
    deadline = time.monotonic() + 60
    while gateway.job_status(job["id"])["status"] != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    store = Store(f"sqlite:///{jobs_stack.state_dir / 'gateway.db'}")
    first = store.job(job["id"])
    port = free_port()
    env = {**jobs_stack.env, "MLPLATFORM_GATEWAY_MLSERVER_URL": jobs_stack.mlserver_url,
           "MLPLATFORM_GATEWAY_TRACKING_URI": jobs_stack.mlflow_url,
           "MLPLATFORM_GATEWAY_DATABASE_URL": f"sqlite:///{jobs_stack.state_dir / 'gateway.db'}",
           "MLPLATFORM_GATEWAY_JOBS_STORAGE": str(jobs_stack.state_dir / "jobs")}
    second = subprocess.Popen([sys.executable, "-m", "uvicorn", "mlplatform.gateway.app:app",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=60, require_ok=True)
        finished = gateway.wait_job(job["id"], timeout=120)
    finally:
        stop(second)
    log = second.stderr.read()
    assert finished["status"] == "Succeeded", finished
    last = store.job(job["id"])
    assert (last.owner, last.started_at) == (first.owner, first.started_at)  # never re-claimed
    assert "re-queued" not in log


def test_a_gateway_restart_loses_no_job(jobs_stack, gateway, tmp_path):
    job = gateway.submit_job(b"hello\n", "slow_async", "score", filename="words.txt")
    deadline = time.monotonic() + 60
    while gateway.job_status(job["id"])["status"] != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    state = __import__("json").loads((jobs_stack.state_dir / "state.json").read_text())
    pid = state["components"]["gateway"]["pid"]
    os.killpg(pid, signal.SIGKILL)  # the gateway and its running job die at once
    psutil.wait_procs([psutil.Process(pid)], timeout=10)

    output = jobs_stack.cli("up").stdout  # restarts only what is not healthy
    assert "gateway started" in output and "MLServer already running" in output
    finished = gateway.wait_job(job["id"], timeout=120)
    assert finished["status"] == "Succeeded", finished
    assert gateway.job_result(job["id"], tmp_path / "out.txt").read_text() == "HELLO\n"


ENVIRONMENT_APP = '''
import json, os

def score(data_path, model_path):
    output = os.path.join(data_path, "environment.json")
    with open(output, "w") as out:
        json.dump(dict(os.environ), out)
    return output
'''


def test_job_code_sees_no_database_url_and_no_keys(jobs_stack, gateway, tmp_path):
    """The model's code runs with the registry's address and little else: not the gateway's
    database URL, S3 keys or settings (gateway/run_job.py: job_environment)."""
    (tmp_path / "env_job").mkdir()
    folder = neomaril_async_folder(tmp_path / "env_job", ENVIRONMENT_APP, "unused.txt", "x")
    jobs_stack.cli("import", str(folder), "--name", "env_job")
    state = __import__("json").loads((jobs_stack.state_dir / "state.json").read_text())
    gateway_env = psutil.Process(state["components"]["gateway"]["pid"]).environ()
    secrets = {name: gateway_env[name] for name in gateway_env
               if name.startswith(("AWS_", "MLPLATFORM_")) or "DATABASE" in name}
    assert "MLPLATFORM_GATEWAY_DATABASE_URL" in secrets  # the gateway has them ...

    job = gateway.submit_job(b"x\n", "env_job", "score", filename="in.txt")
    finished = gateway.wait_job(job["id"], timeout=120)
    assert finished["status"] == "Succeeded", finished
    seen = __import__("json").loads(gateway.job_result(job["id"], tmp_path / "env.json")
                                    .read_text())
    assert seen["MLFLOW_TRACKING_URI"] == jobs_stack.mlflow_url
    assert not set(seen) & set(secrets), set(seen) & set(secrets)  # ... the job does not
    leaked = [name for name, value in seen.items()
              if value and value in secrets.values() and name != "MLFLOW_TRACKING_URI"]
    assert not leaked, leaked
    assert "gateway.db" not in " ".join(seen.values())


def test_a_jobs_registry_account_is_a_file_in_its_home_not_a_variable(tmp_path):
    """Where MLflow requires an account (compose), the job's code reads models with the job
    account, written 0600 to its own home: MLflow's client reads ~/.mlflow/credentials."""
    import stat

    from mlplatform.gateway.run_job import job_environment
    from mlplatform.gateway.settings import GatewaySettings

    settings = GatewaySettings(job_tracking_username="jobs",
                               job_tracking_password="a-jobs-password")
    env = job_environment(settings, tmp_path)
    credentials = Path(env["HOME"]) / ".mlflow" / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert credentials.read_text() == ("[mlflow]\nmlflow_tracking_username = jobs\n"
                                       "mlflow_tracking_password = a-jobs-password\n")
    assert "a-jobs-password" not in " ".join(env.values())
    assert not [name for name in env if "PASSWORD" in name or name.startswith("AWS_")]
