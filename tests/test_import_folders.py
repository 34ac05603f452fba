"""Bring-your-own-code: descriptor validation, sample runs, then served, run and retrained."""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from mlplatform.client import InferenceServerError, MLServerClient
from mlplatform.pyfunc_models.imported.descriptors import DescriptorError, read_descriptor
from mlplatform.pyfunc_models.imported.importer import import_folder
from mlplatform.pyfunc_models.wire import json_request
from tests.support import neomaril_async_folder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MMF, NEOMARIL = EXAMPLES / "mmf_delivery", EXAMPLES / "neomaril_credit"


@pytest.fixture()
def mmf(tmp_path) -> Path:
    folder = tmp_path / "mmf"
    shutil.copytree(MMF, folder)
    return folder


@pytest.fixture()
def neomaril(tmp_path) -> Path:
    folder = tmp_path / "neo"
    shutil.copytree(NEOMARIL, folder)
    return folder


def edit_yaml(path: Path, change) -> None:
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document, allow_unicode=True))


def test_examples_read_as_specs():
    spec = read_descriptor(MMF)
    assert [(t.name, t.task_type) for t in spec.targets] == [
        ("Scoring", "JsonToJson"), ("Batch scoring", "FileToFile"), ("Retraining", "FileToArtifact")]
    assert spec.targets[2].updates == ("model",)
    assert spec.artifacts == (("Model", "model"),)
    neo = read_descriptor(NEOMARIL)
    assert (neo.flavor, neo.targets[0].convention, neo.sample["income"]) == ("neomaril", "neomaril", 4200)


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.pop("targets"), r"mmf\.yml: targets: required, a non-empty list"),
    (lambda d: d["targets"][0].update(taskType="JsonToXml"),
     r"mmf\.yml: targets\[0\]: taskType: 'JsonToXml' is not one of JsonToJson, FileToFile"),
    (lambda d: d["targets"][1].update(path="score_file"),
     r"targets\[1\]: path: 'score_file' is not 'module.function'"),
    (lambda d: d["artifacts"][0].update(path="weights.bin"),
     r"mmf\.yml: artifacts\[0\]: path: 'weights.bin' does not exist"),
    (lambda d: d["artifacts"][0].update(path="../../etc/passwd"),
     r"artifacts\[0\]: path: '../../etc/passwd' points outside"),
    (lambda d: d["targets"][2]["taskOptions"].update(artifacts=["tokenizer"]),
     r"targets\[2\]: taskOptions.artifacts: 'tokenizer' is not an artifact"),
    (lambda d: d["targets"][1].update(name="Scoring"), r"targets\[1\]: name: 'Scoring' repeats"),
])
def test_mmf_descriptor_errors_name_file_field_and_expectation(mmf, change, expected):
    edit_yaml(mmf / "mmf.yml", change)
    with pytest.raises(DescriptorError, match=expected):
        import_folder(mmf)


def test_target_that_does_not_import(mmf):
    edit_yaml(mmf / "mmf.yml", lambda d: d["targets"][0].update(path="main.predict"))
    with pytest.raises(DescriptorError, match=r"mmf\.yml: main\.predict: main has no function 'predict'"):
        import_folder(mmf)
    edit_yaml(mmf / "mmf.yml", lambda d: d["targets"][0].update(path="missing.score"))
    with pytest.raises(DescriptorError, match=r"missing\.score: importing missing failed: ModuleNotFound"):
        import_folder(mmf)


def test_a_sample_is_optional_and_can_come_from_the_command_line(mmf, tmp_path):
    (mmf / "example.json").unlink()
    spec, descriptor = import_folder(mmf)  # no sample run, no error
    assert descriptor.sample is None and spec.name == "mmf"
    bad = tmp_path / "bad.json"
    bad.write_text('{"distance_km": 4.0}')
    with pytest.raises(DescriptorError, match=r"target 'Scoring' \(main.score\) failed on bad.json"):
        import_folder(mmf, example=bad)
    with pytest.raises(DescriptorError, match=r"nowhere.json: cannot read the sample input"):
        import_folder(mmf, example=tmp_path / "nowhere.json")


SEED_000_MAIN = """\
import json

with open('model', 'rb') as f:          # the seed opens its artifact at import
    model = json.loads(f.read())


def score(data):
    return {'minutes': model['base'] + model['per_km'] * data['distance_km']}
"""
SEED_000_MMF = """\
name: Seed 000 as written
description: exactly the layout of the MMF guide
targets:
  - path: main.score
    name: score
    taskType: JsonToJson
artifacts:
  - name: model
    path: model
"""


@pytest.fixture()
def seed_000(tmp_path) -> Path:
    """An MMF folder as seed 000 shows it: main.py, requirements.txt, mmf.yml, the
    artifact -- and no example or schema file."""
    folder = tmp_path / "seed_000"
    folder.mkdir()
    (folder / "main.py").write_text(SEED_000_MAIN)
    (folder / "model").write_text('{"base": 5, "per_km": 2}')
    (folder / "requirements.txt").write_text("")
    (folder / "mmf.yml").write_text(SEED_000_MMF)
    return folder


def test_a_seed_000_folder_as_written_imports(seed_000):
    spec, descriptor = import_folder(seed_000)
    assert descriptor.sample is None and [t.name for t in descriptor.targets] == ["score"]


def test_sample_run_failure_refuses_the_import(mmf):
    (mmf / "example.json").write_text('{"distance_km": 4.0}')
    with pytest.raises(DescriptorError, match=r"target 'Scoring' \(main.score\) failed on example.json"):
        import_folder(mmf)


def test_non_json_answer_refuses_the_import(neomaril):
    (neomaril / "app.py").write_text("def score(data, base_path):\n    return {'ids': {1, 2}}\n")
    with pytest.raises(DescriptorError, match=r"returned dict, which is not JSON-serialisable"):
        import_folder(neomaril)


def test_numpy_answers_are_converted(neomaril):
    spec, _ = import_folder(neomaril)  # app.py returns numpy int64 / float64
    assert spec.name == "neo"


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.update(operation="Batch"), r"neomaril\.yml: operation: 'Batch' is not one of Sync, Async"),
    (lambda d: d.update(source="score.py"), r"neomaril\.yml: source: 'score.py' does not exist"),
    (lambda d: d.update(extra_files=["utils.py"]), r"extra_files\[0\]: 'utils.py' does not exist"),
])
def test_neomaril_descriptor_errors(neomaril, change, expected):
    edit_yaml(neomaril / "neomaril.yml", change)
    with pytest.raises(DescriptorError, match=expected):
        import_folder(neomaril)


def test_requirements_travel_with_the_model(neomaril):
    (neomaril / "requirements.txt").write_text("numpy\nscipy>=1.0  # comment\n")
    spec, _ = import_folder(neomaril)
    requirements = spec.pip_requirements()
    assert "scipy>=1.0" in requirements
    assert [r for r in requirements if r.startswith("numpy")] == [
        r for r in requirements if re.fullmatch(r"numpy==[\d.]+", r)]


# ---------------------------------------------------------------- through the stack


ASYNC_APP = '''
import os

def score(data_path, model_path):
    with open(model_path + "/factor.txt") as f:
        factor = float(f.read())
    name = os.environ["inputFileName"]
    rows = open(os.path.join(data_path, name)).read().split()
    output = os.path.join(data_path, "output.csv")
    with open(output, "w") as f:
        f.write("value,scaled\\n" + "".join(f"{r},{float(r) * factor}\\n" for r in rows[1:]))
    return output
'''


@pytest.fixture(scope="module")
def imported(served, tmp_path_factory):
    async_folder = neomaril_async_folder(tmp_path_factory.mktemp("neomaril_async"), ASYNC_APP,
                                         "factor.txt", "2.5")
    for folder in (MMF, NEOMARIL):
        served.cli("import", str(folder))
    output = served.cli("import", str(async_folder), "--name", "scaler_async").stdout
    assert "mlplatform run scaler_async 'score' <file>" in output
    served.cli("deploy")
    return served


@pytest.fixture(scope="module")
def server(imported):
    with MLServerClient(imported.mlserver_url) as client:
        yield client


def test_imported_json_targets_are_served(server):
    assert server.predict("mmf_delivery", {"distance_km": 4.0, "items": 3}) == {"minutes": 28.4}
    answer = server.predict("neomaril_credit", {"income": 4200, "debt": 1300, "age": 37,
                                                "late_payments": 1})
    assert answer["pred"] in (0, 1) and 0 < answer["proba"] < 1


def test_target_is_chosen_by_request_parameter(server):
    body = json_request({"distance_km": 1, "items": 1}, "mmf_delivery")
    body["parameters"] = {"target": "Batch scoring"}
    with pytest.raises(InferenceServerError, match="is FileToFile; expected JsonToJson"):
        server.infer("mmf_delivery", body)
    body["parameters"] = {"target": "Scoring"}
    assert server.infer("mmf_delivery", body)["outputs"][0]["data"] == ['{"minutes": 16.3}']


def test_unknown_request_parameters_are_refused_not_dropped(server, imported):
    body = json_request({"distance_km": 1, "items": 1}, "mmf_delivery")
    body["parameters"] = {"targte": "Scoring"}  # a typo must not fall back to the default
    with pytest.raises(InferenceServerError, match="unknown parameter.s. targte; this model "
                                                   "takes: target"):
        server.infer("mmf_delivery", body)
    import requests

    through_gateway = requests.post(imported.gateway_url + "/forward?model=mmf_delivery",
                                    json={"distance_km": 1, "items": 1},
                                    headers={"X-Param-target": "Scoring"})
    assert through_gateway.status_code == 200 and through_gateway.json() == {"minutes": 16.3}
    refused = requests.post(imported.gateway_url + "/forward?model=mmf_delivery",
                            json={"distance_km": 1}, headers={"X-Param-colour": "red"})
    assert refused.status_code == 400 and "takes no parameter(s) colour" in refused.json()[
        "detail"]


def test_errors_in_imported_code_are_400_with_the_reason(server):
    with pytest.raises(InferenceServerError) as raised:
        server.predict("neomaril_credit", {"income": 1})
    assert raised.value.status_code == 400
    assert "missing field(s): debt, age, late_payments" in raised.value.message


def test_a_seed_000_folder_is_registered_and_served_without_a_sample(served, seed_000):
    output = served.cli("import", str(seed_000)).stdout
    assert "no sample input (example.json, schema.json or --example FILE): registering " \
           "without a sample run" in output
    served.cli("deploy", "--model", "seed_000")
    with MLServerClient(served.mlserver_url) as client:
        assert client.predict("seed_000", {"distance_km": 3}) == {"minutes": 11}


def test_run_file_to_file(imported, tmp_path):
    output = imported.cli("run", "mmf_delivery", "Batch scoring", str(MMF / "orders.csv"),
                          "--output", str(tmp_path)).stdout
    assert f"wrote {tmp_path / 'orders_scored.csv'}" in output
    rows = list(csv.DictReader((tmp_path / "orders_scored.csv").open()))
    assert [r["order_id"] for r in rows] == ["A1", "A2", "A3", "A4", "A5"]
    assert rows[0]["minutes"] == "19.8"


def test_run_neomaril_async(imported, tmp_path):
    data = tmp_path / "values.csv"
    data.write_text("value\n1\n2\n")
    imported.cli("run", "scaler_async", "score", str(data), "--output", str(tmp_path / "out"))
    assert (tmp_path / "out" / "output.csv").read_text() == "value,scaled\n1,2.5\n2,5.0\n"


def test_run_json_target_on_a_file(imported, tmp_path):
    data = tmp_path / "order.json"
    data.write_text(json.dumps({"distance_km": 2, "items": 1}))
    assert json.loads(imported.cli("run", "mmf_delivery", "Scoring", str(data)).stdout) == {
        "minutes": 19.8}


def test_run_with_an_unknown_target_is_a_clear_error(imported):
    result = imported.cli("run", "mmf_delivery", "Nope", str(MMF / "orders.csv"), check=False)
    assert result.returncode == 1 and "no target 'Nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_retraining_registers_updated_artifacts(imported, server, registry_client):
    before = registry_client.get_model_version_by_alias("mmf_delivery", "champion").version
    output = imported.cli("run", "mmf_delivery", "Retraining", str(MMF / "retrain.csv")).stdout
    after = registry_client.get_model_version_by_alias("mmf_delivery", "challenger").version
    assert int(after) == int(before) + 1 and f"models:/mmf_delivery/{after}" in output
    assert registry_client.get_model_version_by_alias("mmf_delivery", "champion").version == before
    assert server.predict("mmf_delivery", {"distance_km": 4.0, "items": 3})["minutes"] == 28.4
    imported.cli("deploy", "--model", "mmf_delivery@challenger")
    retrained = server.predict("mmf_delivery", {"distance_km": 4.0, "items": 3})["minutes"]
    assert retrained != 28.4 and 25 < retrained < 40  # the new coefficients, near 8 + 4.5 d + 1.2 i


@pytest.fixture(scope="module")
def registry_client(imported):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=imported.mlflow_url)
