"""The last step of ``make demo``: query every served model and say where everything is."""
from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Tuple

from mlplatform.client import GatewayClient, InferenceServerError, MLServerClient, ServerUnreachable
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION
from mlplatform.pyfunc_models.wire import json_request

from .settings import load_settings
from .stack import StackState


def _sample_photo() -> bytes:
    """A small photo that ships with scikit-learn, as JPEG bytes."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    buffer = io.BytesIO()
    Image.fromarray(load_sample_image("china.jpg")[::2, ::2]).save(buffer, format="JPEG")
    return buffer.getvalue()


def _sample_digit() -> bytes:
    from sklearn.datasets import load_digits

    from mlplatform.pyfunc_models.images.digits import digit_png

    return digit_png(load_digits().data[3], scale=6)  # a "3"


def _requests(out_dir: Path) -> List[Tuple[str, str, Callable[[MLServerClient], Any]]]:
    photo, digit = _sample_photo(), _sample_digit()

    def quantize(server: MLServerClient) -> str:
        png = base64.b64decode(server.predict_image("image_quantize", photo))
        (out_dir / "quantized.png").write_bytes(png)
        return f"a {len(png):,}-byte PNG, saved to {out_dir / 'quantized.png'}"

    applicant = {"income": 4200, "debt": 1300, "age": 37, "late_payments": 1}
    return [
        ("echo", '{"a": 10}', lambda s: s.predict("echo", {"a": 10})),
        ("fraud", json.dumps(EXAMPLE_TRANSACTION), lambda s: s.predict("fraud", EXAMPLE_TRANSACTION)),
        ("fraud_sklearn", "(same transaction)",
         lambda s: s.predict("fraud_sklearn", EXAMPLE_TRANSACTION)),
        ("fraud_scenario", "(same transaction)",
         lambda s: s.predict("fraud_scenario", EXAMPLE_TRANSACTION)),
        ("image_quantize", f"china.jpg ({len(photo):,} bytes)", quantize),
        ("digits", "a handwritten 3 (PNG)", lambda s: s.predict("digits", digit)),
        ("mmf_delivery", '{"distance_km": 4.0, "items": 3}',
         lambda s: s.predict("mmf_delivery", {"distance_km": 4.0, "items": 3})),
        ("neomaril_credit", json.dumps(applicant), lambda s: s.predict("neomaril_credit", applicant)),
    ]


def main() -> int:
    settings = load_settings()
    state = StackState(settings.state_path)
    mlflow, mlserver = state.components.get("mlflow"), state.components.get("mlserver")
    if mlflow is None or mlserver is None:
        print("the stack is not running; run `make demo` (or `mlplatform up`) first", file=sys.stderr)
        return 1
    out_dir = settings.state_path / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)

    failed = False
    with MLServerClient(mlserver.url) as server:
        served = {m["name"] for m in server.models() if m.get("state") == "READY"}
        for model, shown, ask in _requests(out_dir):
            if model not in served:
                print(f"{model:<16} not served (mlplatform register / import it, then deploy)")
                continue
            try:
                answer = ask(server)
            except (InferenceServerError, ServerUnreachable) as exc:
                print(f"{model}: FAILED: {exc}", file=sys.stderr)
                failed = True
                continue
            text = answer if isinstance(answer, str) else json.dumps(answer)
            print(f"{model:<16} {shown}\n{'':<16} -> {text}")

    body = json.dumps(json_request({"a": 10}, "echo"))
    gateway = state.components.get("gateway")
    forward = ""
    if gateway is not None:
        from mlplatform.gateway.snippets import snippet

        with GatewayClient(gateway.url) as client:  # the printed example, checked first
            answer = client.forward({"a": 10})
        forward = (f"\nGateway:           {gateway.url} (API docs {gateway.url}/docs)\n\n"
                   f"Ask the gateway (plain JSON, no V2):\n{snippet('/forward', 'curl', gateway.url)}"
                   f"\n  -> {json.dumps(answer)}\n"
                   "More: mlplatform snippet /predict --lang python\n")
    print(f"""
MLflow UI:         {mlflow.url}
MLServer V2 docs:  {mlserver.url}/v2/docs
Models:            {mlserver.url}/v2/repository/index (POST)
{forward}
Ask MLServer yourself:
  curl -s {mlserver.url}/v2/models/echo/infer -H 'Content-Type: application/json' \\
       -d '{body}'

From Python or a notebook:
  from mlplatform.client import MLServerClient
  MLServerClient("{mlserver.url}").predict("echo", {{"a": 10}})
  import mlflow; mlflow.set_tracking_uri("{mlflow.url}")
  mlflow.pyfunc.load_model("models:/echo@champion").predict({{"a": 10}})

File targets of the imported examples:
  mlplatform run mmf_delivery 'Batch scoring' examples/mmf_delivery/orders.csv
  mlplatform run mmf_delivery Retraining examples/mmf_delivery/retrain.csv   # new version, challenger
  mlplatform deploy --model mmf_delivery@challenger                          # serve it, no downtime

The stack keeps running: `make down` stops it, `mlplatform status` checks it.""")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
