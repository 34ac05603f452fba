"""Generate MLServer's ``settings.json`` and ``model-settings.json`` from the MLflow registry."""
from .generator import (
    DEFAULT_PARALLEL_WORKERS,
    BatchingOptions,
    ConfigError,
    ModelReference,
    ResolvedModel,
    ServerOptions,
    generated_model_names,
    models_with_alias,
    resolve,
    write_config,
)

__all__ = [
    "DEFAULT_PARALLEL_WORKERS",
    "BatchingOptions",
    "ConfigError",
    "ModelReference",
    "ResolvedModel",
    "ServerOptions",
    "generated_model_names",
    "models_with_alias",
    "resolve",
    "write_config",
]
