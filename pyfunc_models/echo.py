"""The platform guide's example model: ``{"a": 10}`` in, ``{"result": 20}`` out."""
from __future__ import annotations

from typing import Any, Dict

from .catalog import BuildContext, ModelBundle, register_model
from .codec import JsonCodecModel
from .errors import ModelInputError

EXAMPLE = {"a": 10}


class EchoModel(JsonCodecModel):
    """Doubles the number in field ``a``; the smallest model that exercises the codec."""

    def score(self, data: Any) -> Dict[str, Any]:
        if not isinstance(data, dict) or "a" not in data:
            raise ModelInputError('echo expects a JSON object with a number field "a", e.g. {"a": 10}')
        value = data["a"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelInputError(f'echo: field "a" must be a number, got {value!r}')
        return {"result": value * 2}


@register_model("echo", description="The guide's JSON example: {'a': 10} -> {'result': 20}")
def build(context: BuildContext) -> ModelBundle:
    return ModelBundle(python_model=EchoModel(), input_example=EXAMPLE)
