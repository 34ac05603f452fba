"""The notebooks in notebooks/: saved without outputs, and each one run top to bottom
with nbclient against the real stack, its key outputs checked."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.unit
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_saved_without_outputs(path):
    """A pre-commit-style check: outputs hold data, secrets and noise; they are not source."""
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, cell in enumerate(cells) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} have outputs; clear them "
                       "(JupyterLab: Edit > Clear Outputs of All Cells) before committing")


def test_there_are_the_four_notebooks():
    assert [p.name for p in NOTEBOOKS] == [
        "01-train-and-register.ipynb", "02-serve-and-query.ipynb",
        "03-evaluate-and-compare.ipynb", "04-bring-your-own-code.ipynb"]


def notebook_environment(stack) -> Dict[str, str]:
    """What the hub gives every spawned server (scripts/jupyterhub.py)."""
    return {**stack.env, "MLFLOW_TRACKING_URI": stack.mlflow_url,
            "MLPLATFORM_MLSERVER_URL": stack.mlserver_url,
            "MLPLATFORM_GATEWAY_URL": stack.gateway_url,
            "MLPLATFORM_EXAMPLES": str(ROOT / "examples")}


def run_notebook(path: Path, stack, workdir: Path, monkeypatch) -> List[str]:
    """Execute the notebook in a fresh kernel (in ``workdir``); its text outputs, in order."""
    import nbformat
    from nbclient import NotebookClient

    for name, value in notebook_environment(stack).items():
        monkeypatch.setenv(name, value)  # the kernel inherits this process's environment
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append(output["text"])
            elif "data" in output:
                texts.append(output["data"].get("text/plain", ""))
                if "image/png" in output["data"]:
                    texts.append("<image/png>")
    return texts


def test_notebooks_train_serve_evaluate_and_import(served, tmp_path, monkeypatch):
    outputs = {path.name[:2]: "\n".join(run_notebook(path, served, tmp_path, monkeypatch))
               for path in NOTEBOOKS}
    assert "registered models:/notebook_thermometer/" in outputs["01"]
    assert "as @champion" in outputs["01"]
    assert re.search(r"notebook_thermometer/\d+: serving", outputs["02"])
    # the fitted line is close to F = 1.8 C + 32, through each of the three doors
    for door, celsius in (("the guide's functions", 100), ("MLServerClient", 0),
                          ("GatewayClient /forward", 37)):
        found = re.search(rf"{door}: {{'fahrenheit': ([-\d.]+)}}", outputs["02"])
        assert found and abs(float(found.group(1)) - (1.8 * celsius + 32)) < 0.5, door
    assert "echo through the gateway: {'result': 20}" in outputs["02"]
    assert "roc_auc" in outputs["03"] and "<image/png>" in outputs["03"]
    assert "champion (v" in outputs["03"]
    assert "registered models:/mmf_delivery/" in outputs["04"] and "answer: {" in outputs["04"]
    assert not list(tmp_path.glob("*.ipynb"))  # nothing written beside them
