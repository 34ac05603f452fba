"""Image decoding rules, without a server."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mlplatform.pyfunc_models.errors import ModelInputError
from mlplatform.pyfunc_models.images import imaging
from mlplatform.pyfunc_models.images.quantize import nearest_colours


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_accepts_png_and_jpeg_modes():
    for mode in ("RGB", "RGBA", "L", "P"):
        assert imaging.open_image(png(Image.new(mode, (5, 4)))).size == (5, 4)


@pytest.mark.parametrize("data, message", [
    (b"", "expected the bytes"),
    (b"GIF89a....", "not a PNG or JPEG"),
])
def test_rejects_non_images(data, message):
    with pytest.raises(ModelInputError, match=message):
        imaging.open_image(data)


def test_rejects_truncated_png():
    data = png(Image.new("RGB", (64, 64), "red"))
    with pytest.raises(ModelInputError, match="cannot be decoded"):
        imaging.open_image(data[:60])


def test_rejects_images_over_the_pixel_limit(monkeypatch):
    monkeypatch.setattr(imaging, "MAX_PIXELS", 100)
    with pytest.raises(ModelInputError, match="at most 100 pixels"):
        imaging.open_image(png(Image.new("RGB", (20, 20))))


def test_nearest_colours_picks_the_closest_palette_entry():
    palette = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.float32)
    pixels = np.array([[[10, 10, 10], [250, 240, 245]]], dtype=np.uint8)
    assert nearest_colours(pixels, palette).tolist() == [[[0, 0, 0], [255, 255, 255]]]
