"""The last step of ``make demo``: query the served models and say where everything is."""
from __future__ import annotations

import json
import sys

from client import InferenceServerError, MLServerClient, ServerUnreachable
from pyfunc_models.fraud.features import EXAMPLE_TRANSACTION
from pyfunc_models.wire import json_request

from .settings import load_settings
from .stack import StackState

EXAMPLES = {
    "echo": {"a": 10},
    "fraud": EXAMPLE_TRANSACTION,
}


def main() -> int:
    settings = load_settings()
    state = StackState(settings.state_path)
    mlflow, mlserver = state.components.get("mlflow"), state.components.get("mlserver")
    if mlflow is None or mlserver is None:
        print("the stack is not running; run `make demo` (or `mlplatform up`) first", file=sys.stderr)
        return 1

    failed = False
    with MLServerClient(mlserver.url) as server:
        for model, data in EXAMPLES.items():
            try:
                answer = server.predict(model, data)
            except (InferenceServerError, ServerUnreachable) as exc:
                print(f"{model}: FAILED: {exc}", file=sys.stderr)
                failed = True
                continue
            print(f"{model:<6} {json.dumps(data)}\n    -> {json.dumps(answer)}")

    body = json.dumps(json_request(EXAMPLES["echo"], "echo"))
    print(f"""
MLflow UI:         {mlflow.url}
MLServer V2 docs:  {mlserver.url}/v2/docs
Models:            {mlserver.url}/v2/repository/index (POST)

Ask MLServer yourself:
  curl -s {mlserver.url}/v2/models/echo/infer -H 'Content-Type: application/json' \\
       -d '{body}'

From Python or a notebook:
  from client import MLServerClient
  MLServerClient("{mlserver.url}").predict("echo", {{"a": 10}})
  import mlflow; mlflow.set_tracking_uri("{mlflow.url}")
  mlflow.pyfunc.load_model("models:/echo@champion").predict({{"a": 10}})

The stack keeps running: `make down` stops it, `mlplatform status` checks it.""")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
