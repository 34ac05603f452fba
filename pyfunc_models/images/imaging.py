"""Reading and writing images for the image models, with clear errors for bad input.

Any PNG or JPEG in (RGB, RGBA, greyscale, palette); PNG out.  Non-image or
truncated bytes, and images too large to process, are the sender's error
(``ModelInputError``, HTTP 400), never a crash of the server.
"""
from __future__ import annotations

import io
import warnings
from typing import Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ModelInputError

ACCEPTED_FORMATS = ("PNG", "JPEG")
MAX_PIXELS = 25_000_000  # ~ 5000 x 5000; bigger is refused rather than exhausting memory


def open_image(data: bytes) -> Image.Image:
    """Decode PNG/JPEG bytes fully (so truncation is detected here, not later)."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ModelInputError("expected the bytes of a PNG or JPEG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ModelInputError(
                    f"image is {width}x{height}; at most {MAX_PIXELS:,} pixels are accepted")
            image.load()
    except ModelInputError:
        raise
    except UnidentifiedImageError as exc:
        raise ModelInputError("the bytes are not a PNG or JPEG image") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ModelInputError(f"the image cannot be decoded: {exc}") from exc
    return image


def split_alpha(image: Image.Image) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """RGB pixels as uint8 ``[h, w, 3]``, and the alpha channel if the image has one."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"))
        return rgba[..., :3], rgba[..., 3]
    return np.asarray(image.convert("RGB")), None


def png_bytes(rgb: np.ndarray, alpha: Optional[np.ndarray] = None) -> bytes:
    pixels = rgb if alpha is None else np.dstack([rgb, alpha])
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB" if alpha is None else "RGBA").save(
        buffer, format="PNG", optimize=False)
    return buffer.getvalue()
