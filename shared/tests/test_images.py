from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.images import (
    ImageError,
    ImageTooLarge,
    crop_normalised,
    decode_image,
    resize_max_side,
    to_pixel_box,
)


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_jpeg_decodes_to_rgb() -> None:
    array = decode_image(_encode(Image.new("RGB", (40, 30), (10, 200, 30)), "JPEG"))
    assert array.shape == (30, 40, 3) and array.dtype == np.uint8


def test_png_alpha_is_composited_over_white() -> None:
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    array = decode_image(_encode(image, "PNG"))
    assert array[0, 0].tolist() == [255, 255, 255]


def test_grayscale_cmyk_palette_and_16_bit_become_rgb() -> None:
    for image, fmt in (
        (Image.new("L", (8, 6), 128), "PNG"),
        (Image.new("CMYK", (8, 6), (0, 255, 255, 0)), "JPEG"),
        (Image.new("P", (8, 6), 3), "PNG"),
        (Image.fromarray(np.full((6, 8), 40000, np.uint16)), "PNG"),
    ):
        array = decode_image(_encode(image, fmt))
        assert array.shape == (6, 8, 3), image.mode


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    array = decode_image(_encode(image, "JPEG", exif=exif.tobytes()))
    assert array.shape == (40, 20, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello world", "not a readable image"),
        (b"\x89PNG\r\n\x1a\nbroken", "not a readable"),
    ],
)
def test_bad_bytes_are_image_errors(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message) as caught:
        decode_image(data)
    assert caught.value.status == 400


def test_truncated_jpeg_is_an_image_error() -> None:
    data = _encode(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)), "JPEG"
    )
    with pytest.raises(ImageError):
        decode_image(data[: len(data) // 3])


def test_limits_are_413() -> None:
    data = _encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageTooLarge) as too_many_bytes:
        decode_image(data, max_bytes=10)
    assert too_many_bytes.value.status == 413
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(data, max_pixels=9_999)


def test_resize_and_crop_helpers() -> None:
    image = np.zeros((400, 200, 3), np.uint8)
    assert resize_max_side(image, 100).shape == (100, 50, 3)
    assert resize_max_side(image, 1000).shape == (400, 200, 3)
    assert crop_normalised(image, [0.5, 0.5, 1.0, 1.0]).shape == (200, 100, 3)
    assert to_pixel_box([0.0, 0.0, 0.0, 0.0], 200, 400) == (0, 0, 1, 1)


def test_jpeg_can_be_decoded_smaller_but_not_below_the_need() -> None:
    data = _encode(Image.new("RGB", (1600, 1200), (90, 90, 90)), "JPEG")
    small = decode_image(data, at_least=500)
    assert max(small.shape[:2]) >= 500 and max(small.shape[:2]) < 1600
    assert decode_image(data).shape == (1200, 1600, 3)
