"""Tamper-evident versions (pyfunc_models/integrity.py): the manifest recorded at
registration, checked by deploy (through MLServer's load), by the alias follower and
by the registry check that a signing key adds -- against the real stack, with an
artifact overwritten the way an attacker would: through MLflow's artifact upload route."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mlplatform.pyfunc_models.integrity import (
    MANIFEST_TAG,
    MARKER,
    SIGNATURE_TAG,
    IntegrityError,
    Key,
    check_record,
    manifest_of,
    manifest_tag,
    verify_files,
)
from tests.support import start_gateway, stop

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CREDIT = {"income": 4200, "debt": 1300, "age": 37, "late_payments": 1}


# ---------------------------------------------------------------- the pieces

def test_verify_files_names_the_file_and_both_digests(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.pkl").write_bytes(b"honest")
    (tmp_path / "MLmodel").write_text("flavors: {}")
    digests = manifest_of(tmp_path)
    assert set(digests) == {"a/model.pkl", "MLmodel"}
    verify_files(tmp_path, digests, "m/1")  # unchanged: passes

    (tmp_path / "a" / "model.pkl").write_bytes(b"evil")
    with pytest.raises(IntegrityError) as altered:
        verify_files(tmp_path, digests, "m/1")
    assert str(altered.value) == (
        f"{MARKER}: m/1: file 'a/model.pkl' was altered: registered sha256 "
        f"{digests['a/model.pkl']}, found {manifest_of(tmp_path)['a/model.pkl']}")
    (tmp_path / "a" / "model.pkl").write_bytes(b"honest")
    (tmp_path / "extra.py").write_text("import os")
    with pytest.raises(IntegrityError, match="file 'extra.py' was added after registration"):
        verify_files(tmp_path, digests, "m/1")
    (tmp_path / "extra.py").unlink()
    (tmp_path / "MLmodel").unlink()
    with pytest.raises(IntegrityError, match="file 'MLmodel' is missing"):
        verify_files(tmp_path, digests, "m/1")


def _ed25519(folder: Path, name: str):
    private = Ed25519PrivateKey.generate()
    private_path, public_path = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private_path.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    public_path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def test_signatures_bind_the_manifest_to_the_model_and_version(tmp_path):
    signer_path, verifier_path = _ed25519(tmp_path, "release")
    _, stranger_path = _ed25519(tmp_path, "stranger")
    tag = manifest_tag({"MLmodel": "ab" * 32})
    signature = Key.load(str(signer_path)).sign("fraud", "3", tag)
    tags = {MANIFEST_TAG: tag, SIGNATURE_TAG: signature}
    verifier = Key.load(str(verifier_path))
    assert check_record("fraud", "3", tags, verifier) == {"MLmodel": "ab" * 32}
    for name, version, key in (("fraud", "4", verifier), ("echo", "3", verifier),
                               ("fraud", "3", Key.load(str(stranger_path)))):
        with pytest.raises(IntegrityError, match="the signature does not match"):
            check_record(name, version, tags, key)
    with pytest.raises(IntegrityError, match="is not signed"):
        check_record("fraud", "3", {MANIFEST_TAG: tag}, verifier)
    with pytest.raises(IntegrityError, match="has no manifest"):
        check_record("fraud", "3", {}, verifier)
    assert check_record("fraud", "3", {}, None) is None  # registered before manifests
    with pytest.raises(IntegrityError, match="a public key cannot sign"):
        verifier.sign("fraud", "3", tag)


def test_hmac_keys_sign_and_verify_and_short_ones_are_refused(tmp_path):
    secret = tmp_path / "hmac.key"
    secret.write_bytes(b"k" * 40)
    key = Key.load(str(secret))
    tag = manifest_tag({"MLmodel": "cd" * 32})
    tags = {MANIFEST_TAG: tag, SIGNATURE_TAG: key.sign("m", "1", tag)}
    assert key.scheme == "hmac" and check_record("m", "1", tags, key)
    with pytest.raises(IntegrityError, match="malformed"):
        check_record("m", "1", {MANIFEST_TAG: "{not json"}, None)
    secret.write_bytes(b"short")
    with pytest.raises(IntegrityError, match="at least 32 bytes"):
        Key.load(str(secret))


# ---------------------------------------------------------------- the real stack

def _import_version(served, source: Path, name: str, alias: str, env=None) -> str:
    output = served.cli("import", str(source), "--name", name, "--alias", alias,
                        env=env).stdout
    return served_version_of(output)


def served_version_of(output: str) -> str:
    """The version `mlplatform import` registered (its line `model URI: ... -> models:/M/N`)."""
    line = next(line for line in output.splitlines() if line.startswith("model URI:"))
    return line.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def tampered(served, tmp_path_factory):
    """``tampered``: version 1 served (champion), version 2 (challenger) whose
    ``model.json`` was overwritten after registration through MLflow's upload route."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("tampered") / "credit"
    shutil.copytree(EXAMPLES / "neomaril_credit", folder)
    first = _import_version(served, folder, "tampered", "champion")
    served.cli("deploy", "--model", "tampered")
    (folder / "neomaril.yml").write_text((folder / "neomaril.yml").read_text() + "\n# v2\n")
    second = _import_version(served, folder, "tampered", "challenger")
    client = MlflowClient(served.mlflow_url)
    root = client.get_model_version_download_uri("tampered", second)
    manifest = json.loads(client.get_model_version("tampered", second).tags[MANIFEST_TAG])
    target = next(name for name in manifest["sha256"] if name.endswith("model.json"))
    path = root.split("mlflow-artifacts:/", 1)[1].strip("/") + "/" + target
    evil = json.dumps({"weights": "overwritten by someone with the artifact store"}).encode()
    answer = requests.put(f"{served.mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{path}",
                          data=evil, timeout=30)
    assert answer.status_code == 200, answer.text  # the attack itself works
    return {"first": first, "second": second, "file": target, "client": client,
            "registered": manifest["sha256"][target]}


def _served_version(served) -> str:
    answer = requests.post(served.gateway_url + "/forward?model=tampered", json=CREDIT,
                           timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Model-Version"]


def test_registration_records_a_manifest_of_every_file(served, tampered):
    tags = tampered["client"].get_model_version("tampered", tampered["first"]).tags
    files = json.loads(tags[MANIFEST_TAG])["sha256"]
    assert "MLmodel" in files and any(name.endswith(".pkl") for name in files)
    assert all(len(digest) == 64 for digest in files.values())


def test_deploy_of_an_altered_version_is_refused_by_mlservers_load(served, tampered):
    result = served.cli("deploy", "--model", f"tampered/{tampered['second']}", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert MARKER in output and "MLServer answered" in output
    assert f"file '{tampered['file']}' was altered" in output
    assert tampered["registered"] in output  # the registered digest; the found one beside it
    assert f"{tampered['first']} still served" in output
    assert _served_version(served) == tampered["first"]


def test_the_follower_refuses_an_altered_champion_and_counts_it(served, tampered, tmp_path):
    state = json.loads((served.state_dir / "state.json").read_text())
    repository = state["components"]["mlserver"]["info"]["config_dir"]
    process, url = start_gateway(tmp_path, served.mlserver_url, timeout=20,
                                 tracking_uri=served.mlflow_url, alias_poll="0.5",
                                 mlserver_repository=repository)
    client = tampered["client"]
    try:
        client.set_registered_model_alias("tampered", "champion", tampered["second"])
        deadline = time.monotonic() + 120
        counted = ""
        while 'reason="integrity"' not in counted:
            assert time.monotonic() < deadline, "the follower never refused the version"
            time.sleep(0.5)
            counted = "\n".join(line for line in requests.get(url + "/metrics", timeout=30)
                                .text.splitlines()
                                if line.startswith("mlplatform_gateway_deploy_refusals_total"))
        assert 'mlplatform_gateway_deploy_refusals_total{model="tampered",reason="integrity"} ' \
               '1.0' in counted
        assert _served_version(served) == tampered["first"]
    finally:
        client.set_registered_model_alias("tampered", "champion", tampered["first"])
        stop(process)


def test_with_a_verify_key_only_signed_versions_deploy(served, tmp_path):
    signer, verifier = _ed25519(tmp_path, "release")
    folder = tmp_path / "signed_credit"
    shutil.copytree(EXAMPLES / "neomaril_credit", folder)
    signing = {**served.env, "MLPLATFORM_SIGNING_KEY_FILE": str(signer)}
    version = _import_version(served, folder, "signed_credit", "champion", env=signing)
    verifying = {**served.env, "MLPLATFORM_VERIFY_KEY_FILE": str(verifier)}
    served.cli("deploy", "--model", "signed_credit", env=verifying)
    answer = requests.post(served.gateway_url + "/forward?model=signed_credit", json=CREDIT,
                           timeout=30)
    assert answer.status_code == 200 and answer.headers["X-Model-Version"] == version

    refused = served.cli("deploy", "--model", "echo", env=verifying, check=False)
    assert refused.returncode != 0
    assert "is not signed; only signed versions are deployable" in refused.stdout + \
        refused.stderr
    assert requests.post(served.gateway_url + "/forward?model=echo", json={"a": 1},
                         timeout=30).json() == {"result": 2}  # still served as it was


def test_a_predictor_checks_its_pulled_folder_against_its_manifest(tmp_path, monkeypatch):
    """KServe's predictor loads /mnt/models, not models:/: the render carries the manifest
    (MLPLATFORM_MANIFEST) and the runtime checks the folder before MLflow reads it."""
    import mlflow

    from mlplatform.mlserver_configs.loaded_models import load_verified
    from mlplatform.pyfunc_models.echo import EchoModel

    folder = tmp_path / "models"
    mlflow.pyfunc.save_model(str(folder), python_model=EchoModel())
    monkeypatch.setenv("MLPLATFORM_MANIFEST", manifest_tag(manifest_of(folder)))
    model, copy = load_verified(str(folder), "echo", "7")
    assert copy is None and model.metadata is not None
    pickled = next(folder.glob("*.pkl"))
    pickled.write_bytes(pickled.read_bytes() + b"\n")
    with pytest.raises(IntegrityError, match=f"echo/7: file '{pickled.name}' was altered"):
        load_verified(str(folder), "echo", "7")
    monkeypatch.delenv("MLPLATFORM_MANIFEST")
    _, verifier = _ed25519(tmp_path, "k")
    monkeypatch.setenv("MLPLATFORM_VERIFY_KEY_FILE", str(verifier))
    with pytest.raises(IntegrityError, match="cannot be verified"):
        load_verified(str(folder), "echo", "7")
