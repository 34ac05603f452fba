"""The GitHub workflow (seed 004) is valid against GitHub's workflow schema (vendored by
check-jsonschema, so no network), and runs what .ci/run runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
CHECK = str(Path(sys.executable).with_name("check-jsonschema"))


@pytest.mark.unit
def test_the_workflow_is_valid_for_github():
    result = subprocess.run([CHECK, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.unit
def test_the_workflow_lints_and_runs_the_suite_like_ci():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert "flake8 ." in "\n".join(step.get("run", "") for step in jobs["lint"]["steps"])
    runs = "\n".join(step.get("run", "") for step in jobs["test"]["steps"])
    assert "bash .ci/run" in runs and "make test" in (ROOT / ".ci" / "run").read_text()
    assert jobs["test"]["needs"] == "lint"


@pytest.mark.unit
def test_the_workflow_builds_the_image_and_runs_the_compose_stack():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert "--privileged" in jobs["test"]["container"]["options"]  # dockerd for .ci/run
    runs = "\n".join(step.get("run", "") for step in jobs["images"]["steps"])
    assert "docker build -f infra/docker/Dockerfile" in runs
    assert "docker compose up -d --no-build --wait" in runs and "/forward" in runs
    assert jobs["images"]["steps"][-1]["if"] == "always()"
    assert "down -v" in jobs["images"]["steps"][-1]["run"]
