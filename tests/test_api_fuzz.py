"""schemathesis against the real stack: every operation of /openapi.json fuzzed with at
least 150 examples (plus the examples, coverage and stateful phases: a submitted job's
id is followed to its status and result), with 0 server errors, 0 statuses the contract
does not list, 0 bodies or content types that contradict the document.

Not checked: ``positive_data_acceptance`` (a schema-valid request answered 4xx).  A
model name, alias or file target is valid only if it exists in the registry, which a
schema cannot say; those 400s are the contract (docs/gateway.md).

The fuzzer talks to a gateway process of its own (on the session's MLflow and
MLServer, with its own job database): the hundreds of jobs it submits run there,
and stop with it, instead of queueing before other tests' jobs."""
from __future__ import annotations

import subprocess
from pathlib import Path

from mlplatform.gateway import contract
from tests.support import BIN, stack_environment, start_gateway, stop

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# 300 took 385 s of a 27-minute `make test` on CI (2026-11-23, with the container tests
# added); 150, with the same seed and every phase kept, keeps `make test` under 25 minutes.
EXAMPLES_PER_OPERATION = 150


def test_every_operation_keeps_the_contract_under_fuzzing(served, tmp_path):
    served.cli("import", str(EXAMPLES / "mmf_delivery"))  # a model with file targets: real jobs
    served.cli("deploy")
    process, url = start_gateway(tmp_path / "gateway", served.mlserver_url, timeout=20,
                                 s3=served.s3, tracking_uri=served.mlflow_url,
                                 mlserver_grpc="127.0.0.1:"
                                 + served.env["MLPLATFORM_MLSERVER_GRPC_PORT"],
                                 # A repository of its own: the lifecycle routes answer as
                                 # configured (404/409), and nothing the fuzzer sends can
                                 # change what the session's stack serves.
                                 mlserver_repository=str(tmp_path / "repository"))
    try:
        report = fuzz(url, tmp_path)
    finally:
        stop(process)
    assert f"Tested: {len(contract.ROUTES)}" in report and "✅ Stateful" in report, report[-5000:]


def fuzz(url: str, tmp_path) -> str:
    env = stack_environment(tmp_path / "gateway")  # the CLI writes the gateway's database
    token = subprocess.run([str(BIN / "mlplatform"), "token", "create", "--group", "fuzz",
                            "--scope", "admin"],
                           env=env, capture_output=True, text=True, check=True
                           ).stdout.strip().splitlines()[-1]
    command = [str(BIN / "st"), "run", f"{url}/openapi.json",
               "--header", f"Authorization: Bearer {token}",
               "--checks", "all", "--exclude-checks", "positive_data_acceptance",
               "--max-examples", str(EXAMPLES_PER_OPERATION), "--workers", "2",
               "--request-timeout", "60", "--seed", "20261122", "--no-color"]
    # cwd: schemathesis and hypothesis keep their caches in the working folder.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-20000:]
    return report
