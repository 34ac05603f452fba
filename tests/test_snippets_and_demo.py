"""Printed examples must work as printed: `mlplatform snippet` and the demo's curl line."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from mlplatform.gateway.snippets import EXAMPLES

RUNNERS = {
    "curl": lambda path: ["bash", str(path)],
    "python": lambda path: [sys.executable, str(path)],
    "javascript": lambda path: ["node", str(path)],
}
SUFFIX = {"curl": ".sh", "python": ".py", "javascript": ".mjs"}


@pytest.mark.parametrize("language", list(RUNNERS))
@pytest.mark.parametrize("route", list(EXAMPLES))
def test_every_snippet_runs_as_printed(served, tmp_path, route, language):
    if language == "javascript" and shutil.which("node") is None:
        pytest.skip("node is not installed")
    code = served.cli("snippet", route, "--lang", language).stdout
    script = tmp_path / f"snippet{SUFFIX[language]}"
    script.write_text(code)
    result = subprocess.run(RUNNERS[language](script), cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    output = result.stdout
    assert "bad request" not in output and "модель" not in output, output
    if language != "curl":
        assert output.startswith("200") or route in ("/metadata", "/health", "/ready"), output


def test_demo_prints_a_forward_curl_that_works(served, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mlplatform.scripts.demo"], env=served.env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    match = re.search(r"^(curl -s -X POST '[^']+/forward' .*?\n\s+-d '.*?')$", result.stdout,
                      re.MULTILINE | re.DOTALL)
    assert match, result.stdout
    ran = subprocess.run(["bash", "-c", match.group(1)], capture_output=True, text=True,
                         timeout=30)
    assert json.loads(ran.stdout) == {"result": 20}
    assert "echo" in result.stdout and '{"result": 20}' in result.stdout
