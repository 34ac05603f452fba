"""The image models through MLServer: real images in, PNG or JSON out, bad bytes rejected."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits, load_sample_image

from mlplatform.client import InferenceServerError, MLServerClient
from mlplatform.pyfunc_models.images.digits import digit_png


@pytest.fixture(scope="module")
def server(served):
    with MLServerClient(served.mlserver_url) as client:
        yield client


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def decode_png(text: str) -> Image.Image:
    data = base64.b64decode(text, validate=True)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(data))


def test_quantize_a_jpeg_photo(server):
    photo = Image.fromarray(load_sample_image("china.jpg"))
    answer = decode_png(server.predict_image("image_quantize", encode(photo, "JPEG")))
    assert answer.size == photo.size and answer.mode == "RGB"
    colours = np.unique(np.asarray(answer).reshape(-1, 3), axis=0)
    assert 2 <= len(colours) <= 16


def test_quantize_keeps_alpha_and_accepts_greyscale(server):
    rgba = Image.fromarray(load_sample_image("flower.jpg")[:120, :90]).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 90, dtype=np.uint8), (120, 1))
    rgba.putalpha(Image.fromarray(alpha))
    answer = decode_png(server.predict_image("image_quantize", encode(rgba, "PNG")))
    assert answer.mode == "RGBA" and answer.size == (90, 120)
    assert np.array_equal(np.asarray(answer)[..., 3], alpha)

    grey = Image.fromarray(load_sample_image("flower.jpg")[:50, :70]).convert("L")
    assert decode_png(server.predict_image("image_quantize", encode(grey, "PNG"))).size == (70, 50)


def test_digits_reads_rendered_digits(server):
    digits = load_digits()
    picks = range(0, 1797, 60)
    right = sum(server.predict("digits", digit_png(digits.data[i], scale=6))["digit"]
                == digits.target[i] for i in picks)
    assert right >= 0.9 * len(picks)
    answer = server.predict("digits", digit_png(digits.data[0]))
    assert set(answer["probabilities"]) == {str(d) for d in range(10)}


@pytest.mark.parametrize("model", ["image_quantize", "digits"])
def test_corrupt_or_non_image_bytes_are_a_400_and_the_server_lives_on(server, model):
    png = encode(Image.new("RGB", (40, 40), "white"), "PNG")
    for payload, message in [(b"definitely not an image", "not a PNG or JPEG"),
                             (png[: len(png) // 2], "cannot be decoded")]:
        with pytest.raises(InferenceServerError) as raised:
            server.predict(model, payload)
        assert raised.value.status_code == 400
        assert message in raised.value.message
    assert server.is_ready(model)


def test_invalid_base64_is_a_400(server):
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES",
                        "parameters": {"content_type": "base64"}, "data": ["%%% not base64"]}]}
    with pytest.raises(InferenceServerError) as raised:
        server.infer("digits", body)
    assert raised.value.status_code == 400 and "not valid base64" in raised.value.message


def test_notebook_path_returns_the_same_base64_png(served, server):
    import mlflow

    mlflow.set_tracking_uri(served.mlflow_url)
    model = mlflow.pyfunc.load_model("models:/image_quantize@champion")
    image = encode(Image.fromarray(load_sample_image("flower.jpg")[:64, :64]), "PNG")
    assert model.predict(image) == server.predict_image("image_quantize", image)
