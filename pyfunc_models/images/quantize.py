"""``image_quantize``: image in, the same image in a 16-colour palette out (PNG).

The palette is learnt with k-means on pixels of scikit-learn's bundled sample
photographs (``load_sample_images``), the classic colour-quantisation example.
Serving maps each pixel to its nearest palette colour with numpy, in chunks,
so memory stays bounded for large images.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from ..catalog import BuildContext, ModelBundle, register_model
from ..codec import JsonCodecModel
from .imaging import open_image, png_bytes, split_alpha

PALETTE_ARTIFACT = "palette"
CHUNK_PIXELS = 500_000
DEFAULT_PARAMS: Dict[str, Any] = {"n_colors": 16, "sample_pixels": 20_000, "seed": 0}


def nearest_colours(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Each RGB pixel replaced by the closest palette colour (squared RGB distance)."""
    flat = pixels.reshape(-1, 3).astype(np.float32)
    out = np.empty_like(flat)
    squared_palette = (palette ** 2).sum(axis=1)
    for start in range(0, len(flat), CHUNK_PIXELS):
        chunk = flat[start:start + CHUNK_PIXELS]
        distances = squared_palette[None, :] - 2.0 * chunk @ palette.T
        out[start:start + CHUNK_PIXELS] = palette[np.argmin(distances, axis=1)]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(pixels.shape)


class QuantizeModel(JsonCodecModel):
    input_format = "base64"
    output_format = "base64"

    def __init__(self) -> None:
        self.palette: np.ndarray = None

    def load_context(self, context) -> None:
        self.palette = np.load(context.artifacts[PALETTE_ARTIFACT]).astype(np.float32)

    def score(self, data: bytes) -> bytes:
        rgb, alpha = split_alpha(open_image(data))
        return png_bytes(nearest_colours(rgb, self.palette), alpha)


def train(**overrides: Any):
    """Fit the palette; returns it with the reconstruction error on the sample images."""
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_sample_images

    params = {**DEFAULT_PARAMS, **overrides}
    photos = load_sample_images().images
    pixels = np.concatenate([photo.reshape(-1, 3) for photo in photos]).astype(np.float32)
    rng = np.random.default_rng(params["seed"])
    sample = pixels[rng.choice(len(pixels), params["sample_pixels"], replace=False)]
    kmeans = KMeans(n_clusters=params["n_colors"], n_init=4, random_state=params["seed"])
    palette = kmeans.fit(sample).cluster_centers_.astype(np.float32)
    errors = [np.mean((nearest_colours(p, palette).astype(np.float32) - p) ** 2) for p in photos]
    metrics = {"mean_squared_error": float(np.mean(errors)), "n_colors": float(len(palette))}
    return palette, metrics, params


@register_model("image_quantize", "Image -> PNG in a 16-colour palette learnt with k-means "
                "on scikit-learn's sample photos", requirements=("pillow",))
def build(context: BuildContext) -> ModelBundle:
    from sklearn.datasets import load_sample_image

    palette, metrics, params = train()
    path = context.workdir / "palette.npy"
    np.save(path, palette)
    example = png_bytes(load_sample_image("flower.jpg")[::8, ::8])  # a small real photo
    return ModelBundle(QuantizeModel(), input_example=example,
                       artifacts={PALETTE_ARTIFACT: str(path)}, metrics=metrics, params=params)
