"""Drive the demo page in a headless browser (Playwright over a system Chromium).

Used by the end-to-end test and to take the screenshots of ``docs/demo.md``::

    python -m findvl.demo.browser http://127.0.0.1:7860/ IMAGE.png OUT_DIR [X Y]

Playwright cannot download its own browser here; :func:`chromium_path` finds the system one
(Debian package ``chromium``) or ``$FINDVL_CHROMIUM``.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

TIMEOUT_MS = 60_000


def chromium_path() -> str | None:
    """The system Chromium: ``$FINDVL_CHROMIUM``, else ``chromium`` / ``chromium-browser``."""
    env = os.environ.get("FINDVL_CHROMIUM")
    if env:
        return env
    return shutil.which("chromium") or shutil.which("chromium-browser")


def open_page(playwright, url: str, home: str | Path | None = None):
    """A headless Chromium page at ``url`` (the demo loaded).

    ``home``: the browser's ``HOME`` (and XDG config/cache folders), so that it writes nothing
    into the user's own; a fresh temporary folder when None.
    """
    home = Path(home or tempfile.mkdtemp(prefix="findvl-chromium-"))
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
    )
    browser = playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=["--no-sandbox"], env=env
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.get_by_role("tab", name="Generic segmentation").wait_for()
    return browser, page


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def upload(page, elem_id: str, image: Path) -> None:
    """Upload ``image`` into the image component ``elem_id`` and wait until it shows."""
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(image))
    page.locator(f"#{elem_id} img").first.wait_for(state="visible")


def picture(page, elem_id: str, previous: str | None = None) -> np.ndarray:
    """The picture an output image component ``elem_id`` shows (waits for a new one when
    ``previous``, the last source, is given)."""
    img = page.locator(f"#{elem_id} img").first
    img.wait_for(state="visible")
    if previous is not None:
        page.wait_for_function(
            "([sel, old]) => { const i = document.querySelector(sel); return i && i.src !== old; }",
            arg=[f"#{elem_id} img", previous],
        )
    src = img.get_attribute("src")
    data = page.request.get(src).body()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def click_image(page, elem_id: str, x: float, y: float, size: tuple[int, int]) -> None:
    """Click pixel ``(x, y)`` of the ``size`` = ``(H, W)`` image shown in ``elem_id``."""
    img = page.locator(f"#{elem_id} img").first
    box = img.bounding_box()
    h, w = size
    # as the page maps clicks back: the image is fitted into its box, centred, never enlarged
    scale = min(box["width"] / w, box["height"] / h, 1.0)
    left = box["x"] + (box["width"] - w * scale) / 2
    top = box["y"] + (box["height"] - h * scale) / 2
    page.mouse.click(left + (x + 0.5) * scale, top + (y + 0.5) * scale)


def interactive_click(page, image: Path, x: float, y: float) -> tuple[str, np.ndarray]:
    """Interactive tab: upload, click at ``(x, y)``; returns the clicks field and the overlay."""
    tab(page, "Interactive")
    upload(page, "click-image", image)
    page.wait_for_timeout(500)  # let the upload's reset of the clicks finish first
    size = Image.open(image).size[::-1]
    click_image(page, "click-image", x, y, size)
    overlay = picture(page, "click-overlay")
    return page.locator("#points textarea, #points input").first.input_value(), overlay


def ground(page, image: Path, phrases: str) -> np.ndarray:
    """Grounding tab: upload, type the phrases, run; returns the overlay."""
    tab(page, "Grounding")
    upload(page, "ground-image", image)
    page.locator("#ground-phrases textarea").fill(phrases)
    page.locator("#ground-run").click()
    return picture(page, "ground-overlay")


def segment(page, image: Path) -> np.ndarray:
    tab(page, "Generic segmentation")
    upload(page, "segment-image", image)
    page.locator("#segment-run").click()
    return picture(page, "segment-overlay")


def screenshots(url: str, image: Path, out: Path, x: float = 20, y: float = 20) -> list[Path]:
    """One PNG per tab under ``out`` after running each tab once on ``image``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as p:
        browser, page = open_page(p, url)
        try:
            for name, action in (
                ("segment", lambda: segment(page, image)),
                ("ground", lambda: ground(page, image, "the red circle\nthe blue square")),
                ("click", lambda: interactive_click(page, image, x, y)),
                ("interleave", lambda: _interleave(page, image)),
                ("search", lambda: _search(page)),
            ):
                action()
                page.evaluate("window.scrollTo(0, 0)")
                page.wait_for_timeout(500)
                shots.append(out / f"demo_{name}.png")
                page.screenshot(path=str(shots[-1]), full_page=False)
        finally:
            browser.close()
    return shots


def _interleave(page, image: Path) -> None:
    tab(page, "Interleaved")
    upload(page, "interleave-image", image)
    page.get_by_role("button", name="Segment entities").click()
    page.locator("#interleave-overlay img").first.wait_for(state="visible")


def _search(page) -> None:
    tab(page, "Retrieval")
    page.get_by_role("button", name="Search").click()
    page.locator("#search-gallery img").first.wait_for(state="visible")


if __name__ == "__main__":
    args = sys.argv[1:]
    point = [float(v) for v in args[3:5]] or [20.0, 20.0]
    for path in screenshots(args[0], Path(args[1]), Path(args[2]), *point):
        print(path)
