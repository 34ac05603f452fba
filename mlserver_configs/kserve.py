"""Kubernetes + KServe manifests for one registered model version (``mlplatform k8s render``).

KServe speaks the same V2 protocol and runs MLServer, so a model that outgrows one
machine is served there the same way it is served locally:

* a ``ServingRuntime`` running the platform image's MLServer with the platform's
  runtime class (the one ``mlserver_configs`` uses locally);
* an ``InferenceService`` whose ``storageUri`` is the *concrete* S3 location the alias
  resolves to now (``s3://bucket/.../artifacts``; KServe's storage initializer pulls it
  at start -- the model is never baked into an image), V2 protocol, replicas and
  resources, and the registered name and version as MLServer's model name and version,
  so the gateway's ``/v2/models/<name>/versions/<v>/infer`` calls work unchanged;
* a ``ServiceAccount`` naming the Secret with the S3 keys (the keys themselves are
  never written: ``kubectl create secret`` them, docs/kubernetes.md);
* the gateway (``Deployment`` + ``Service``) for this model, calling the
  InferenceService's predictor service.

The alias is resolved when rendering: re-rendering after ``mlplatform deploy`` (or an
alias move) changes only the version and the storage location (tested).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List

from mlplatform.pyfunc_models.integrity import (
    MANIFEST_ENV,
    MANIFEST_TAG,
    SIGNATURE_ENV,
    SIGNATURE_TAG,
)

from .generator import RUNTIME, ResolvedModel

ENV_OF_TAG = {MANIFEST_TAG: MANIFEST_ENV, SIGNATURE_TAG: SIGNATURE_ENV}

PART_OF = {"app.kubernetes.io/part-of": "mlplatform"}
MODELS_DIR = "/mnt/models"    # where KServe's storage initializer puts storageUri
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8080, 9000, 8082
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Every pod and container (docs/security.md): non-root, no privilege escalation, no
# capabilities, the runtime's default seccomp profile, a read-only root filesystem (/tmp is
# an emptyDir), and no service-account token (nothing here calls the Kubernetes API).
POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}}
# KServe (Knative) names the predictor's hostname after the InferenceService: keep it
# short enough for every generated name (<name>-predictor-...) to stay under 63.
MAX_NAME = 45


class RenderError(ValueError):
    """The model cannot be rendered as asked; the message says why."""


@dataclass(frozen=True)
class KServeOptions:
    namespace: str = "mlplatform"
    image: str = "mlplatform/platform:0.1.0"  # the platform image (infra/docker)
    runtime: str = "mlplatform-mlserver"
    service_account: str = "mlplatform-models"
    s3_secret: str = "mlplatform-s3"      # kubectl create secret ... (docs/kubernetes.md)
    # the gateway's MLflow account (MLFLOW_TRACKING_USERNAME / _PASSWORD): MLflow runs with
    # authentication (infra/k8s/base/mlflow.yaml, which makes this account at start)
    mlflow_secret: str = "mlplatform-gateway-mlflow"
    min_replicas: int = 1
    max_replicas: int = 3
    cpu: str = "1"
    memory: str = "2Gi"
    gateway_replicas: int = 2
    tracking_uri: str = "http://mlflow.mlplatform.svc.cluster.local:5000"


def object_name(model_name: str) -> str:
    """A registered name as a Kubernetes object name (``fraud_sklearn`` -> ``fraud-sklearn``)."""
    name = model_name.lower().replace("_", "-").replace(".", "-")
    if not _NAME.match(name) or len(name) > MAX_NAME:
        raise RenderError(f"model name {model_name!r} does not make a Kubernetes name "
                          f"({name!r}: lower-case letters, digits and '-', at most {MAX_NAME} "
                          "characters); register it under such a name")
    return name


def render(model: ResolvedModel, storage_uri: str, options: KServeOptions) -> List[Dict[str, Any]]:
    """Every object, in the order ``kubectl apply`` should create them."""
    if not storage_uri.startswith(("s3://", "gs://", "https://", "pvc://", "hdfs://")):
        raise RenderError(
            f"{model.name}/{model.version} is stored at {storage_uri!r}, which a cluster "
            "cannot pull from: register it with artifacts in S3 (MLFLOW_S3_ENDPOINT_URL, "
            "MLPLATFORM_S3_BUCKET) or pass --artifacts-destination s3://... for a tracking "
            "server that proxies S3")
    if not 1 <= options.min_replicas <= options.max_replicas:
        raise RenderError(f"replicas: need 1 <= min ({options.min_replicas}) <= max "
                          f"({options.max_replicas})")
    return [serving_runtime(options), service_account(options),
            inference_service(model, storage_uri, options),
            gateway_deployment(model, options), gateway_service(model, options)]


def _metadata(name: str, options: KServeOptions, **labels: str) -> Dict[str, Any]:
    return {"name": name, "namespace": options.namespace, "labels": {**PART_OF, **labels}}


def _env(values: Dict[str, str]) -> List[Dict[str, str]]:
    return [{"name": key, "value": value} for key, value in values.items()]


def serving_runtime(options: KServeOptions) -> Dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
        "metadata": _metadata(options.runtime, options),
        "spec": {
            "annotations": {"prometheus.kserve.io/port": str(METRICS_PORT),
                            "prometheus.kserve.io/path": "/metrics"},
            "supportedModelFormats": [{"name": "mlflow", "version": "3", "autoSelect": False}],
            "protocolVersions": ["v2"],
            "containers": [{
                "name": "kserve-container", "image": options.image,
                "command": ["mlserver", "start", MODELS_DIR],
                # MLServer builds the model's settings from MLSERVER_MODEL_* when the folder
                # has no model-settings.json (KServe's storage initializer writes none).
                "env": _env({"MLSERVER_MODEL_IMPLEMENTATION": RUNTIME,
                             "MLSERVER_MODEL_URI": MODELS_DIR,
                             "MLSERVER_HTTP_PORT": str(HTTP_PORT),
                             "MLSERVER_GRPC_PORT": str(GRPC_PORT),
                             "MLSERVER_METRICS_PORT": str(METRICS_PORT),
                             "MLSERVER_LOAD_MODELS_AT_STARTUP": "true"}),
                "ports": [{"containerPort": HTTP_PORT, "protocol": "TCP"}],
                "securityContext": {**CONTAINER_SECURITY, "privileged": False,
                                    "runAsNonRoot": True,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                "resources": {"requests": {"cpu": options.cpu, "memory": options.memory},
                              "limits": {"cpu": options.cpu, "memory": options.memory}},
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def service_account(options: KServeOptions) -> Dict[str, Any]:
    """KServe's storage initializer reads S3 keys from the Secrets of the predictor's
    service account (with the ``serving.kserve.io/s3-*`` annotations on the Secret)."""
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": _metadata(options.service_account, options),
            "secrets": [{"name": options.s3_secret}],
            "automountServiceAccountToken": False}


def inference_service(model: ResolvedModel, storage_uri: str,
                      options: KServeOptions) -> Dict[str, Any]:
    name = object_name(model.name)
    metadata = _metadata(name, options, **{"mlplatform/model": model.name,
                                           "mlplatform/version": model.version})
    metadata["annotations"] = {"mlplatform/model-uri": model.uri,
                               "mlplatform/alias": model.alias or "",
                               "mlplatform/run-id": model.run_id}
    resources = {"cpu": options.cpu, "memory": options.memory}
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": {
            "minReplicas": options.min_replicas, "maxReplicas": options.max_replicas,
            "serviceAccountName": options.service_account,
            "automountServiceAccountToken": False,
            "securityContext": POD_SECURITY,
            "model": {
                "modelFormat": {"name": "mlflow", "version": "3"},
                "runtime": options.runtime, "protocolVersion": "v2",
                "storageUri": storage_uri,
                # the version's manifest (and signature): the runtime checks the files the
                # storage initializer pulled before loading them (pyfunc_models/integrity.py)
                "env": _env({"MLSERVER_MODEL_NAME": model.name,
                             "MLSERVER_MODEL_VERSION": model.version,
                             **{ENV_OF_TAG[tag]: value for tag, value in model.integrity}}),
                "resources": {"requests": dict(resources), "limits": dict(resources)},
            },
        }},
    }


def predictor_url(model: ResolvedModel, options: KServeOptions) -> str:
    return f"http://{object_name(model.name)}-predictor.{options.namespace}.svc.cluster.local"


def gateway_deployment(model: ResolvedModel, options: KServeOptions) -> Dict[str, Any]:
    name = f"{object_name(model.name)}-gateway"
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "gateway",
              "mlplatform/model": model.name}
    env = _env({
        "MLPLATFORM_GATEWAY_MLSERVER_URL": predictor_url(model, options),
        "MLPLATFORM_GATEWAY_TRACKING_URI": options.tracking_uri,
        # every route's model is this one; the served version is what the server reports
        "MLPLATFORM_GATEWAY_FORWARD_MODEL": model.name,
        "MLPLATFORM_GATEWAY_BATCH_MODEL": model.name,
        "MLPLATFORM_GATEWAY_PREDICT_MODEL": model.name,
        "MLPLATFORM_GATEWAY_SCENARIO_MODEL": model.name,
        "MLPLATFORM_GATEWAY_TARGET": "kserve",
        "MLPLATFORM_GATEWAY_ALIAS_POLL": "0",  # KServe decides what runs: re-render, apply
        "MLPLATFORM_STATE_DIR": "/var/lib/mlplatform",
    })
    probe = {"httpGet": {"path": "/health", "port": HTTP_PORT}, "periodSeconds": 10}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _metadata(name, options, **labels),
        "spec": {
            "replicas": options.gateway_replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": {**PART_OF, **labels},
                             "annotations": {"prometheus.io/scrape": "true",
                                             "prometheus.io/port": str(HTTP_PORT),
                                             "prometheus.io/path": "/metrics"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {**POD_SECURITY, "runAsUser": 10001, "runAsGroup": 10001},
                    "containers": [{
                        "name": "gateway", "image": options.image,
                        "command": ["uvicorn", "mlplatform.gateway.app:app", "--host",
                                    "0.0.0.0", "--port", str(HTTP_PORT), "--no-access-log"],
                        "env": env,
                        "envFrom": [{"secretRef": {"name": options.mlflow_secret}}],
                        "ports": [{"name": "http", "containerPort": HTTP_PORT}],
                        "readinessProbe": {**probe, "httpGet": {"path": "/ready",
                                                                "port": HTTP_PORT}},
                        "livenessProbe": probe,
                        "securityContext": CONTAINER_SECURITY,
                        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                      "limits": {"cpu": "1", "memory": "1Gi"}},
                        "volumeMounts": [{"name": "state", "mountPath": "/var/lib/mlplatform"},
                                         {"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "state", "emptyDir": {}},
                                {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def gateway_service(model: ResolvedModel, options: KServeOptions) -> Dict[str, Any]:
    name = f"{object_name(model.name)}-gateway"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _metadata(name, options, **{"mlplatform/model": model.name}),
            "spec": {"selector": {"app.kubernetes.io/name": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
