"""Generated files are validated by MLServer's own settings models."""
from __future__ import annotations

import json

import pytest
from mlserver.settings import ModelSettings, Settings

from mlplatform.mlserver_configs.generator import (
    BatchingOptions,
    ConfigError,
    ModelReference,
    ResolvedModel,
    ServerOptions,
    generated_model_names,
    write_config,
)
from mlplatform.pyfunc_models.conventions import ModelReferenceError

FRAUD = ResolvedModel("fraud", "3", "champion", "abc123", "mlflow-artifacts:/2/models/m-1/artifacts")
ECHO = ResolvedModel("echo", "1", None, "def456", "s3://bucket/1/models/m-2/artifacts")


def test_written_files_load_in_mlserver(tmp_path):
    server = ServerOptions(http_port=18000, grpc_port=18001, metrics_port=18002, parallel_workers=0)
    write_config(tmp_path, server, [FRAUD, ECHO], BatchingOptions(max_batch_size=8, max_batch_time=0.01))
    settings = Settings.model_validate(json.loads((tmp_path / "settings.json").read_text()))
    assert (settings.http_port, settings.grpc_port, settings.metrics_port) == (18000, 18001, 18002)
    assert settings.parallel_workers == 0

    fraud = ModelSettings.model_validate(
        json.loads((tmp_path / "fraud" / "model-settings.json").read_text()))
    assert fraud.name == "fraud"
    assert fraud.implementation_ == "mlplatform.mlserver_configs.runtime.ThreadLoadingMLflowRuntime"
    assert fraud.parameters.uri == "models:/fraud/3" and fraud.parameters.version == "3"
    assert fraud.max_batch_size == 8 and fraud.max_batch_time == 0.01
    assert fraud.parameters.extra["alias"] == "champion"


def test_batching_off_by_default(tmp_path):
    write_config(tmp_path, ServerOptions(), [ECHO])
    document = json.loads((tmp_path / "echo" / "model-settings.json").read_text())
    assert "max_batch_size" not in document


def test_rewrite_removes_only_generated_stale_models(tmp_path):
    write_config(tmp_path, ServerOptions(), [FRAUD, ECHO])
    hand_written = tmp_path / "mine" / "model-settings.json"
    hand_written.parent.mkdir()
    hand_written.write_text(json.dumps({"name": "mine", "implementation": "x.Y"}))
    write_config(tmp_path, ServerOptions(), [FRAUD])
    assert not (tmp_path / "echo").exists()
    assert hand_written.exists()
    assert generated_model_names(tmp_path) == {"fraud"}


def test_duplicate_models_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="listed twice"):
        write_config(tmp_path, ServerOptions(), [ECHO, ECHO])


@pytest.mark.parametrize("text, expected", [
    ("fraud", ModelReference("fraud", "champion", None)),
    ("fraud@staging", ModelReference("fraud", "staging", None)),
    ("fraud/4", ModelReference("fraud", None, "4")),
])
def test_model_references(text, expected):
    assert ModelReference.parse(text) == expected


@pytest.mark.parametrize("text", ["", "a b", "fraud@", "fraud/x", "fraud/1@a"])
def test_bad_model_references(text):
    with pytest.raises(ModelReferenceError):
        ModelReference.parse(text)
