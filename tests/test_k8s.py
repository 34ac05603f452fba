"""Kubernetes: the manifests `mlplatform k8s render` makes from the registry, and the
Kustomize base + overlays for the platform's services.  No cluster here (nor Helm): every
object is validated instead -- core kinds with kubernetes-validate (the API's own
schemas, strict: unknown fields fail), KServe kinds against KServe's CRD schemas
(``../shared/schemas/kserve``, closed the way `kubectl apply --validate=strict` closes
them) -- and `kubectl kustomize` renders the overlays."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mlplatform.mlserver_configs.generator import ResolvedModel
from mlplatform.mlserver_configs.kserve import KServeOptions, RenderError, object_name, render
from tests.support import S3_KEY, S3_SECRET

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "infra" / "k8s"
KUBERNETES = "1.30"
CRDS = {("serving.kserve.io/v1beta1", "InferenceService"):
        ("serving.kserve.io_inferenceservices.yaml", "v1beta1"),
        ("serving.kserve.io/v1alpha1", "ServingRuntime"):
        ("serving.kserve.io_servingruntimes.yaml", "v1alpha1")}


def schema_folder() -> Path:
    """The reference schemas (read-only, never copied into the project)."""
    for candidate in (os.environ.get("MLPLATFORM_SCHEMAS"), ROOT.parent / "shared" / "schemas",
                      Path("/work/shared/schemas")):
        if candidate and (Path(candidate) / "kserve").is_dir():
            return Path(candidate)
    pytest.skip("KServe's CRD schemas are not here (../shared/schemas or MLPLATFORM_SCHEMAS)")


def closed(schema):
    """The CRD schema with unknown fields refused, as the API server's strict field
    validation does (except where the CRD keeps unknown fields)."""
    schema = copy.deepcopy(schema)

    def close(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)
    close(schema)
    return schema


def validate(document):
    key = (document["apiVersion"], document["kind"])
    if key in CRDS:
        file, version = CRDS[key]
        crd = yaml.safe_load((schema_folder() / "kserve" / file).read_text())
        (found,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        jsonschema.validate(document, closed(found["schema"]["openAPIV3Schema"]))
    else:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


MODEL = ResolvedModel("fraud_sklearn", "3", "champion", "0123abcd",
                      "mlflow-artifacts:/1/models/m-42/artifacts")
STORAGE = "s3://mlplatform/1/models/m-42/artifacts"


@pytest.mark.unit
def test_every_rendered_object_is_valid():
    objects = render(MODEL, STORAGE, KServeOptions())
    assert [o["kind"] for o in objects] == ["ServingRuntime", "ServiceAccount",
                                            "InferenceService", "Deployment", "Service"]
    for document in objects:
        validate(document)
    service = objects[2]
    assert service["metadata"]["name"] == "fraud-sklearn"
    model = service["spec"]["predictor"]["model"]
    assert model["storageUri"] == STORAGE and model["protocolVersion"] == "v2"
    assert {"name": "MLSERVER_MODEL_VERSION", "value": "3"} in model["env"]
    gateway = objects[3]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in gateway["env"]}
    assert env["MLPLATFORM_GATEWAY_MLSERVER_URL"] == (
        "http://fraud-sklearn-predictor.mlplatform.svc.cluster.local")
    assert "Secret" not in [o["kind"] for o in objects]  # keys are never rendered


@pytest.mark.unit
def test_a_typo_in_a_kserve_field_fails_validation():
    service = copy.deepcopy(render(MODEL, STORAGE, KServeOptions())[2])
    service["spec"]["predictor"]["minReplica"] = 2
    with pytest.raises(jsonschema.ValidationError, match="minReplica"):
        validate(service)


@pytest.mark.unit
@pytest.mark.parametrize("storage, problem", [
    ("/home/me/.mlplatform/artifacts/1/models/m-42/artifacts", "cannot pull from"),
    ("mlflow-artifacts:/1/models/m-42/artifacts", "cannot pull from")])
def test_a_location_a_cluster_cannot_pull_from_is_refused(storage, problem):
    with pytest.raises(RenderError, match=problem):
        render(MODEL, storage, KServeOptions())


@pytest.mark.unit
def test_names_become_kubernetes_names_or_are_refused():
    assert object_name("fraud_gbm") == "fraud-gbm"
    with pytest.raises(RenderError, match="does not make a Kubernetes name"):
        object_name("Ünïcode model")
    with pytest.raises(RenderError, match="replicas"):
        render(MODEL, STORAGE, KServeOptions(min_replicas=3, max_replicas=2))


@pytest.mark.unit
@pytest.mark.parametrize("overlay", ["minio", "external-s3"])
def test_the_overlays_render_and_every_object_is_valid(overlay):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing: `make test` installs Debian's kubernetes-client")
    result = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = {d["kind"] for d in documents}
    assert {"Namespace", "StatefulSet", "Deployment", "Service", "ConfigMap"} <= kinds
    assert "Secret" not in kinds
    for document in documents:
        validate(document)
        assert document["metadata"].get("namespace", "mlplatform") == "mlplatform"
    config = next(d for d in documents if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"].startswith("mlplatform-config"))
    endpoint = config["data"]["MLFLOW_S3_ENDPOINT_URL"]
    assert ("minio" in endpoint) == (overlay == "minio")
    assert ("StatefulSet", "minio") in {(d["kind"], d["metadata"]["name"]) for d in documents} \
        or overlay != "minio"


@pytest.mark.unit
def test_the_clusters_alert_rules_are_the_local_ones():
    def rules(path: Path):
        return yaml.safe_load(path.read_text())

    assert rules(K8S / "base" / "prometheus" / "alerts.yml") == rules(
        ROOT / "infra" / "prometheus" / "alerts.yml")


def test_render_from_the_registry_and_re_render_after_a_deploy(served, tmp_path):
    """From the real registry (artifacts in S3): storageUri is where the version's files
    are; after a new version becomes champion, re-rendering changes only what names the
    version."""
    from mlplatform.scripts.s3 import s3_client

    first = served.cli("k8s", "render", "fraud_sklearn@champion", "--out", str(tmp_path / "a"))
    assert "wrote" in first.stdout
    before = list(yaml.safe_load_all((tmp_path / "a" / "fraud-sklearn.yaml").read_text()))
    for document in before:
        validate(document)
    storage = before[2]["spec"]["predictor"]["model"]["storageUri"]
    bucket, _, prefix = storage.removeprefix("s3://").partition("/")
    client = s3_client(served.s3.endpoint, S3_KEY, S3_SECRET)
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    assert prefix + "/MLmodel" in [o["Key"] for o in listed.get("Contents", [])]

    served.cli("register", "fraud_sklearn", "--force", "--alias", "champion")
    served.cli("k8s", "render", "fraud_sklearn@champion", "--out", str(tmp_path / "b"))
    after = list(yaml.safe_load_all((tmp_path / "b" / "fraud-sklearn.yaml").read_text()))
    changed = sorted(_differences(before, after))
    version_fields = {
        "[2].metadata.labels.mlplatform/version",
        "[2].metadata.annotations.mlplatform/model-uri",
        "[2].metadata.annotations.mlplatform/run-id",
        "[2].spec.predictor.model.storageUri",
        "[2].spec.predictor.model.env[1].value",      # MLSERVER_MODEL_VERSION
        "[2].spec.predictor.model.env[2].value",      # MLPLATFORM_MANIFEST (MLmodel differs)
    }
    assert set(changed) == version_fields, changed
    assert after[2]["spec"]["predictor"]["model"]["storageUri"] != storage
    env = {e["name"]: e["value"] for e in after[2]["spec"]["predictor"]["model"]["env"]}
    assert "MLmodel" in json.loads(env["MLPLATFORM_MANIFEST"])["sha256"]


def _differences(left, right, path=""):
    if isinstance(left, dict) and isinstance(right, dict):
        for key in set(left) | set(right):
            yield from _differences(left.get(key), right.get(key), f"{path}.{key}")
    elif isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        for index, (a, b) in enumerate(zip(left, right)):
            yield from _differences(a, b, f"{path}[{index}]")
    elif left != right:
        yield path


def _all_documents():
    """Every object of both overlays and of a render."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing: `make test` installs Debian's kubernetes-client")
    documents = list(render(MODEL, STORAGE, KServeOptions()))
    for overlay in ("minio", "external-s3"):
        result = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        documents += [d for d in yaml.safe_load_all(result.stdout) if d]
    return documents


def _pods(documents):
    """(name, pod spec, containers) of every workload, the KServe ones included."""
    for document in documents:
        kind, name = document["kind"], document["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet", "Job"):
            spec = document["spec"]["template"]["spec"]
            yield f"{kind}/{name}", spec, spec["containers"]
        elif kind == "InferenceService":
            predictor = document["spec"]["predictor"]
            yield f"{kind}/{name}", predictor, [predictor["model"]]
        elif kind == "ServingRuntime":
            yield f"{kind}/{name}", None, document["spec"]["containers"]


@pytest.mark.unit
def test_every_container_runs_restricted_and_without_an_api_token():
    """Non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp, a read-only
    root filesystem; no service-account token but where the API is read (Prometheus)."""
    checked = 0
    for where, pod, containers in _pods(_all_documents()):
        pod_context = (pod or {}).get("securityContext", {})
        if pod is not None:
            reads_the_api = where == "Deployment/prometheus"
            assert pod.get("automountServiceAccountToken") is reads_the_api, where
        for container in containers:
            context = container.get("securityContext", {})
            if where.startswith("InferenceService"):  # its container is the runtime's
                context = {**CONTAINER_SECURITY_OF_RUNTIME, **context}
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities") == {"drop": ["ALL"]}, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert True in (context.get("runAsNonRoot"), pod_context.get("runAsNonRoot")), where
            seccomp = context.get("seccompProfile") or pod_context.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, where
            checked += 1
    assert checked >= 9


CONTAINER_SECURITY_OF_RUNTIME = render(MODEL, STORAGE, KServeOptions())[0]["spec"][
    "containers"][0]["securityContext"]


@pytest.mark.unit
def test_mlflow_postgres_and_minio_are_reachable_only_from_whom_they_serve():
    policies = {d["metadata"]["name"]: d["spec"] for d in _all_documents()
                if d["kind"] == "NetworkPolicy"}
    platform = {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "mlplatform"}}}
    assert policies["postgres"]["ingress"] == [
        {"from": [platform], "ports": [{"protocol": "TCP", "port": 5432}]}]
    assert platform in policies["mlflow"]["ingress"][0]["from"]
    minio = policies["minio"]["ingress"][0]
    assert platform not in minio["from"] and minio["ports"] == [{"protocol": "TCP",
                                                                 "port": 9000}]
    allowed = [p["podSelector"].get("matchLabels") for p in minio["from"]]
    assert {"app.kubernetes.io/name": "mlflow"} in allowed
    assert {"app.kubernetes.io/component": "gateway"} in allowed
    gateway = render(MODEL, STORAGE, KServeOptions())[3]["spec"]["template"]["metadata"]
    assert gateway["labels"]["app.kubernetes.io/component"] == "gateway"
    for name in ("postgres", "mlflow", "minio", "prometheus"):
        assert policies[name]["policyTypes"] == ["Ingress"]


@pytest.mark.unit
def test_no_password_or_key_is_on_a_command_line_or_in_a_manifest():
    for where, _, containers in _pods(_all_documents()):
        for container in containers:
            words = " ".join(container.get("command", []) + container.get("args", []))
            for secret in ("PASSWORD", "SECRET", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY"):
                assert secret not in words or "MC_HOST_local" in words, (where, words)
            for variable in container.get("env", []):
                if any(s in variable["name"] for s in ("PASSWORD", "SECRET")):
                    assert "valueFrom" in variable, (where, variable["name"])
    assert "Secret" not in {d["kind"] for d in _all_documents()}


@pytest.mark.unit
def test_the_database_roles_script_is_the_same_in_compose_and_kubernetes():
    assert (K8S / "base" / "postgres" / "init-roles.sh").read_text() == (
        ROOT / "infra" / "docker" / "postgres" / "init-roles.sh").read_text()
