"""End to end in a real browser: headless Chromium drives the demo page on a local server.

Needs Playwright for Python and a system Chromium (Debian: ``apt-get install chromium``);
skipped, saying why, when either is missing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")
from findvl import viz  # noqa: E402
from findvl.demo import browser  # noqa: E402
from findvl.images import read_image  # noqa: E402

pytestmark = pytest.mark.skipif(
    browser.chromium_path() is None, reason="no system Chromium (apt-get install chromium)"
)


def _object_pixel(examples) -> tuple[str, tuple[int, int]]:
    """An example image and the centre pixel of its largest object (from the panoptic PNG)."""
    name, path, _ = examples.images[0]
    root = path.parents[2]
    panoptic = read_image(root / "panoptic_val" / name).astype(np.int64)
    ids = panoptic[..., 0] + 256 * panoptic[..., 1] + 65536 * panoptic[..., 2]
    values, counts = np.unique(ids[ids > 0], return_counts=True)
    ys, xs = np.nonzero(ids == values[counts.argmax()])
    k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)  # a pixel inside it
    return path, (int(xs[k]), int(ys[k]))


def _assert_painted(overlay: np.ndarray, rgb: np.ndarray, mask: np.ndarray) -> None:
    """The overlay is the (enlarged) image with ``mask`` painted on it and little else."""
    factor = viz.scale_for(*rgb.shape[:2], 384)
    plain = viz.enlarge_image(rgb, factor)
    shown = overlay[: plain.shape[0], : plain.shape[1]]
    assert shown.shape == plain.shape
    changed = (shown != plain).any(-1)
    big_mask = viz.enlarge(mask, factor)
    assert big_mask.any() and changed[big_mask].mean() > 0.9  # painted where the mask is
    if (~big_mask).any():
        assert changed[~big_mask].mean() < 0.5  # and mostly left alone elsewhere


def test_click_ground_and_a_bad_upload_in_the_browser(tmp_path, live_demo):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text(json.dumps({"not": "an image"}))
    with live_demo() as (url, service, examples), sync_api.sync_playwright() as p:
        chromium, page = browser.open_page(p, url, home=tmp_path / "home")
        try:
            path, (x, y) = _object_pixel(examples)
            clicks, overlay = browser.interactive_click(page, path, x, y)
            # the click landed on the pixel we aimed at (to within a pixel of rounding)
            cx, cy, label = (int(v) for v in clicks.split(";")[0].split(","))
            assert abs(cx - x) <= 1 and abs(cy - y) <= 1 and label == 1
            # the overlay is the image with the predicted mask painted on it
            rgb, encoded = service.encode(read_image(path))
            service.predictor.set_encoded(encoded)
            _assert_painted(
                overlay, rgb, service.predictor.predict(point_coords=[[cx, cy]]).masks[0]
            )

            ground = browser.ground(page, path, "the red circle")
            service.predictor.set_encoded(encoded)
            _assert_painted(
                ground, rgb, service.predictor.ground(["the red circle"]).masks[0].numpy()
            )
            text = page.locator("#ground-json").inner_text()
            assert '"the red circle"' in text and "segmentation" in text

            # a broken upload: one line in the page, no traceback
            page.locator("#ground-image input[type=file]").set_input_files(str(not_an_image))
            page.locator("#ground-run").click()
            page.get_by_text("not a readable image").first.wait_for(state="visible")
            assert "Traceback" not in page.content()
        finally:
            chromium.close()
