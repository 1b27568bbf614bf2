"""Pictures for reports and the command line, drawn with PIL (no plotting dependency)."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def palette(n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """``n`` well-separated colours (golden-ratio hues)."""
    out = []
    for i in range(n):
        h = (0.13 + i * 0.618034 + seed * 0.1) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.75, 1.0)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def to_hwc(image) -> np.ndarray:
    """``[3,H,W]`` tensor or ``HxWx3`` array -> ``HxWx3`` uint8 array."""
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    return np.clip(arr, 0, 255).astype(np.uint8)


def overlay(
    image,
    masks,
    *,
    colors: list[tuple[int, int, int]] | None = None,
    alpha: float = 0.5,
    labels: list[str] | None = None,
) -> Image.Image:
    """Masks ``[N,H,W]`` (bool) blended over the image, outlined, with optional labels."""
    base = to_hwc(image).astype(np.float32)
    masks = np.asarray(masks.cpu() if hasattr(masks, "cpu") else masks).astype(bool)
    colors = colors or palette(len(masks))
    for m, c in zip(masks, colors):
        base[m] = (1 - alpha) * base[m] + alpha * np.array(c, dtype=np.float32)
        edge = m & ~_erode(m)
        base[edge] = c
    out = Image.fromarray(base.astype(np.uint8))
    if labels:
        draw = ImageDraw.Draw(out)
        for m, c, text in zip(masks, colors, labels):
            if m.any() and text:
                ys, xs = np.nonzero(m)
                draw.text(
                    (int(xs.mean()) - 3 * len(text), int(ys.mean()) - 5), text, fill=(255, 255, 255)
                )
                del c
    return out


def _erode(mask: np.ndarray) -> np.ndarray:
    m = mask.copy()
    m[1:] &= mask[:-1]
    m[:-1] &= mask[1:]
    m[:, 1:] &= mask[:, :-1]
    m[:, :-1] &= mask[:, 1:]
    return m


def draw_clicks(
    image: Image.Image, clicks: list[tuple[int, int, bool]], radius: int = 3
) -> Image.Image:
    """Green (positive) / red (negative) dots at ``(y, x)``."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    for y, x, positive in clicks:
        color = (40, 220, 40) if positive else (230, 40, 40)
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius), fill=color, outline=(0, 0, 0)
        )
    return out


def captioned(image: Image.Image, text: str, width: int | None = None) -> Image.Image:
    """The image with ``text`` written under it (wrapped)."""
    width = width or image.width
    chars = max(8, width // 6)
    lines = [text[i : i + chars] for i in range(0, len(text), chars)] or [""]
    out = Image.new("RGB", (max(width, image.width), image.height + 12 * len(lines) + 4), "white")
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((2, image.height + 2 + 12 * i), line, fill=(0, 0, 0))
    return out


def grid(images: list[Image.Image], columns: int, pad: int = 4) -> Image.Image:
    """Tile images row by row."""
    if not images:
        return Image.new("RGB", (1, 1), "white")
    w = max(i.width for i in images)
    h = max(i.height for i in images)
    rows = -(-len(images) // columns)
    out = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + pad) + pad), "white")
    for k, img in enumerate(images):
        r, c = divmod(k, columns)
        out.paste(img, (pad + c * (w + pad), pad + r * (h + pad)))
    return out


def line_plot(
    series: dict[str, list[tuple[float, float]]], *, title: str, size=(520, 300)
) -> Image.Image:
    """A small line chart of ``{name: [(x, y), ...]}`` (log-free, auto-scaled)."""
    w, h = size
    left, right, top, bottom = 50, 130, 24, 30
    out = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(out)
    points = [p for s in series.values() for p in s]
    if not points:
        return out
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def at(x, y):
        return (
            left + (x - x0) / (x1 - x0) * (w - left - right),
            h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom),
        )

    draw.rectangle((left, top, w - right, h - bottom), outline=(0, 0, 0))
    draw.text((left, 4), title, fill=(0, 0, 0))
    draw.text((2, top), f"{y1:.3g}", fill=(0, 0, 0))
    draw.text((2, h - bottom - 10), f"{y0:.3g}", fill=(0, 0, 0))
    draw.text((left, h - bottom + 4), f"{x0:.0f}", fill=(0, 0, 0))
    draw.text((w - right - 30, h - bottom + 4), f"{x1:.0f}", fill=(0, 0, 0))
    for k, ((name, pts), color) in enumerate(zip(series.items(), palette(len(series)))):
        if len(pts) > 1:
            draw.line([at(x, y) for x, y in pts], fill=color, width=2)
        draw.text((w - right + 6, top + 12 * k), name, fill=color)
    return out


def save(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
