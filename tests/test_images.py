"""``read_image_tensor``: the model's ``[3,H,W]`` uint8 view of ``read_image``."""

import numpy as np
import pytest
from PIL import Image

from findvl.images import read_image, read_image_tensor


def test_tensor_is_the_array_channels_first(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    tensor = read_image_tensor(tmp_path / "a.png")
    assert tuple(tensor.shape) == (3, 5, 7) and str(tensor.dtype) == "torch.uint8"
    np.testing.assert_array_equal(tensor.permute(1, 2, 0).numpy(), read_image(tmp_path / "a.png"))


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        read_image_tensor(tmp_path / "nothing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        read_image_tensor(tmp_path / "bad.png")
