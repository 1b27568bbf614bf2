"""The PNG encoder: standard files that Pillow decodes to the same pixels, byte-stable."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from findvl.data.synth.png import encode_png


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 13, 3), (64, 48, 3)])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_round_trip_through_pillow(shape: tuple[int, int, int], level: int) -> None:
    rgb = np.random.default_rng(sum(shape) + level).integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(rgb, level)
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # verifies every chunk's CRC and the zlib stream
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (shape[1], shape[0])
        assert np.array_equal(np.asarray(image), rgb)
    assert encode_png(rgb, level) == data


def test_flat_images_compress() -> None:
    flat = np.zeros((128, 128, 3), dtype=np.uint8)
    flat[30:90, 20:70] = (1, 2, 3)
    assert len(encode_png(flat, 1)) < 1000 < len(encode_png(flat, 0))


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((4, 4), dtype=np.uint8),
        np.zeros((4, 4, 4), dtype=np.uint8),
        np.zeros((4, 4, 3), dtype=np.uint16),
        np.zeros((0, 4, 3), dtype=np.uint8),
    ],
)
def test_bad_arrays_are_named(array: np.ndarray) -> None:
    with pytest.raises(ValueError, match="image: expected"):
        encode_png(array)


def test_bad_level() -> None:
    with pytest.raises(ValueError, match="compress_level"):
        encode_png(np.zeros((2, 2, 3), dtype=np.uint8), 10)
