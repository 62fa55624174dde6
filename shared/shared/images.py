"""Image decoding with limits, and the small conversions every service needs.

Every decoded image is upright (EXIF orientation applied) 8-bit RGB, whatever came in:
grayscale, palette, CMYK, 16-bit, or an alpha channel (composited over white).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 1


class ImageError(ValueError):
    """The upload is not an image we can use; ``status`` is the HTTP status to answer with."""

    status = 400
    code = "invalid_image"


class ImageTooLarge(ImageError):
    status = 413
    code = "image_too_large"


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    at_least: int | None = None,
) -> np.ndarray:
    """Decode ``data`` into an upright HxWx3 uint8 RGB array, enforcing the size limits.

    ``at_least``: the caller needs only this many pixels on the longer side; a JPEG is then decoded
    at a reduced scale (much faster), never below it. The array keeps the reduced size.
    """
    return rgb_pixels(decode_picture(data, max_bytes=max_bytes, max_pixels=max_pixels, at_least=at_least))


def decode_picture(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    at_least: int | None = None,
) -> Image.Image:
    """``decode_image`` as an upright RGB PIL image, for callers that only resize and crop it: no
    array of the whole photo is made (about 0.8 ms for 1024x768 here)."""
    if not data:
        raise ImageError("the upload is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the upload is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"the image is {width}x{height} = {width * height} pixels; "
                    f"the limit is {max_pixels} pixels"
                )
            if at_least and image.format == "JPEG":
                scale = at_least / max(width, height)
                if scale < 1.0:
                    image.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
            image.load()
    except ImageTooLarge:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the upload is not a readable image: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"the image is corrupt or truncated: {exc}") from exc
    return upright_rgb(image)


def upright_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image upright (EXIF orientation) in 8-bit RGB, transparency on white."""
    with contextlib.suppress(OSError, SyntaxError, ValueError):  # broken EXIF must not lose the image
        if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # else exif_transpose only copies
            image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        scaled = np.asarray(image, dtype=np.float64)
        peak = scaled.max() or 1.0
        image = Image.fromarray((scaled * (255.0 / max(peak, 255.0))).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError("the image has no pixels")
    return image


def rgb_pixels(image: Image.Image) -> np.ndarray:
    """Read-only HxWx3 uint8 array of an RGB image; several times faster than ``np.asarray(image)``,
    which goes through Pillow's array interface."""
    width, height = image.size
    return np.frombuffer(image.tobytes("raw", "RGB"), dtype=np.uint8).reshape(height, width, 3)


def resize_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so that the longer side is at most ``max_side``; never upscales."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return rgb_pixels(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def crop_normalised(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Crop a normalised ``[x1, y1, x2, y2]`` box, clamped to the image and at least 1 pixel."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = to_pixel_box(box, width, height)
    return image[y1:y2, x1:x2]


def to_pixel_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    x1 = min(max(round(box[0] * width), 0), width - 1)
    y1 = min(max(round(box[1] * height), 0), height - 1)
    x2 = min(max(round(box[2] * width), x1 + 1), width)
    y2 = min(max(round(box[3] * height), y1 + 1), height)
    return x1, y1, x2, y2
