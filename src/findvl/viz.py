"""Pictures for reports and the command line, drawn with PIL (no plotting dependency)."""

from __future__ import annotations

import colorsys
import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]


def palette(n: int, seed: int = 0) -> list[Color]:
    """``n`` well-separated colours (golden-ratio hues)."""
    out = []
    for i in range(n):
        h = (0.13 + i * 0.618034 + seed * 0.1) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.75, 1.0)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


@functools.lru_cache(maxsize=8)
def font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's built-in font at ``size`` pixels (the fixed bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def to_hwc(image) -> np.ndarray:
    """``[3,H,W]`` tensor or ``HxWx3`` array -> ``HxWx3`` uint8 array."""
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    return np.clip(arr, 0, 255).astype(np.uint8)


def scale_for(height: int, width: int, long_side: int = 256) -> int:
    """The smallest integer factor that brings the long side to at least ``long_side``."""
    return max(1, -(-long_side // max(1, height, width)))


def enlarge(array, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of the last two axes of a ``[...,H,W]`` array (masks).

    ``HxWx3`` images go through :func:`enlarge_image`.
    """
    arr = np.asarray(array.cpu() if hasattr(array, "cpu") else array)
    return arr.repeat(factor, axis=-2).repeat(factor, axis=-1)


def enlarge_image(image, factor: int) -> np.ndarray:
    """``[3,H,W]`` tensor or ``HxWx3`` array -> ``(factor*H)x(factor*W)x3`` uint8, nearest."""
    return to_hwc(image).repeat(factor, axis=0).repeat(factor, axis=1)


def fit(image: Image.Image, side: int) -> Image.Image:
    """``image`` scaled (nearest) to fit a ``side`` x ``side`` white square, centred."""
    scale = side / max(image.width, image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    out = Image.new("RGB", (side, side), "white")
    corner = ((side - size[0]) // 2, (side - size[1]) // 2)
    out.paste(image.resize(size, Image.Resampling.NEAREST), corner)
    return out


def overlay(
    image,
    masks,
    *,
    colors: list[Color] | None = None,
    alpha: float = 0.5,
    labels: list[str] | None = None,
    outline: int = 1,
) -> Image.Image:
    """Masks ``[N,H,W]`` (bool) blended over the image, outlined ``outline`` pixels wide, with
    optional labels."""
    base = to_hwc(image).astype(np.float32)
    masks = np.asarray(masks.cpu() if hasattr(masks, "cpu") else masks).astype(bool)
    colors = colors or palette(len(masks))
    for m, c in zip(masks, colors):
        base[m] = (1 - alpha) * base[m] + alpha * np.array(c, dtype=np.float32)
        inner = m
        for _ in range(outline):
            inner = _erode(inner)
        base[m & ~inner] = c
    out = Image.fromarray(base.astype(np.uint8))
    if labels:
        draw = ImageDraw.Draw(out)
        for m, text in zip(masks, labels):
            if m.any() and text:
                ys, xs = np.nonzero(m)
                draw.text(
                    (int(xs.mean()) - 3 * len(text), int(ys.mean()) - 5), text, fill=(255, 255, 255)
                )
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


def frame(image: Image.Image, color: Color, width: int = 4) -> Image.Image:
    """The image with a ``width``-pixel border of ``color`` drawn inside its edges."""
    out = image.copy()
    ImageDraw.Draw(out).rectangle((0, 0, out.width - 1, out.height - 1), outline=color, width=width)
    return out


def wrap(text: str, width: int, size: int = 14) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` pixels wide (long words split)."""
    f = font(size)
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if f.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while f.getlength(word) > width and len(word) > 1:
            cut = max(1, int(len(word) * width / f.getlength(word)))
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    return [*lines, line] if line or not lines else lines


def captioned(
    image: Image.Image, text: str, width: int | None = None, size: int = 14
) -> Image.Image:
    """The image with ``text`` written under it (wrapped to ``width`` pixels)."""
    width = max(width or image.width, image.width)
    lines = wrap(text, width - 4, size)
    step = size + 3
    out = Image.new("RGB", (width, image.height + step * len(lines) + 6), "white")
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((2, image.height + 3 + step * i), line, fill=(0, 0, 0), font=font(size))
    return out


def titled(image: Image.Image, title: str, size: int = 14) -> Image.Image:
    """The image with a one-line ``title`` above it."""
    out = Image.new("RGB", (image.width, image.height + size + 6), "white")
    ImageDraw.Draw(out).text((2, 2), title, fill=(0, 0, 0), font=font(size))
    out.paste(image, (0, size + 6))
    return out


def legend(entries: list[tuple[str, Color]], width: int, size: int = 14) -> Image.Image:
    """A colour swatch, then its text, per ``(text, colour)``; entries flow left to right and
    wrap at ``width`` pixels (a text wider than a row gets rows of its own)."""
    f, step, swatch, gap = font(size), size + 4, size, 16
    placed, x, y = [], 0, 0  # (x, y, lines, colour)
    for text, color in entries:
        lines = wrap(text, width - swatch - 10, size)
        item = swatch + 8 + max(int(f.getlength(line)) for line in lines)
        if x and (x + item > width or len(lines) > 1):
            x, y = 0, y + step
        placed.append((x, y, lines, color))
        x, y = (0, y + step * len(lines)) if len(lines) > 1 else (x + item + gap, y)
    height = (y + step if x else y) + 4
    out = Image.new("RGB", (width, max(height, 1)), "white")
    draw = ImageDraw.Draw(out)
    for x, y, lines, color in placed:
        draw.rectangle(
            (x + 2, y + 3, x + 2 + swatch, y + 3 + swatch), fill=color, outline=(0, 0, 0)
        )
        for k, line in enumerate(lines):
            draw.text((x + swatch + 8, y + 2 + step * k), line, fill=(0, 0, 0), font=f)
    return out


def stack(images: list[Image.Image], pad: int = 4) -> Image.Image:
    """Images one under the other, left-aligned."""
    if not images:
        return Image.new("RGB", (1, 1), "white")
    size = (max(i.width for i in images), sum(i.height + pad for i in images) - pad)
    out = Image.new("RGB", size, "white")
    y = 0
    for image in images:
        out.paste(image, (0, y))
        y += image.height + pad
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


def faded(image) -> np.ndarray:
    """``HxWx3`` uint8: the image washed out towards light grey, so coloured masks stand out."""
    rgb = to_hwc(image).astype(np.float32)
    grey = rgb.mean(-1, keepdims=True)
    return (0.45 * grey + 0.2 * rgb + 0.35 * 255).astype(np.uint8)


def compare(
    image,
    truth,
    predicted,
    entries: list[tuple[str, Color]],
    *,
    truth_colors: list[Color],
    predicted_colors: list[Color] | None = None,
    long_side: int = 256,
    clicks: list[tuple[int, int, bool]] | None = None,
) -> Image.Image:
    """The image, its ground truth and the prediction side by side, enlarged (nearest) to
    ``long_side``, with a legend under them.

    Args:
        image: ``[3,H,W]`` tensor or ``HxWx3`` array.
        truth / predicted: ``[N,H,W]`` / ``[M,H,W]`` bool masks.
        entries: the legend, ``(text, colour)`` per entry.
        truth_colors / predicted_colors: one colour per mask (predicted: as the truth's).
        clicks: ``(y, x, positive)`` on the original image, drawn on every panel.
    """
    rgb = to_hwc(image)
    f = scale_for(*rgb.shape[:2], long_side)
    big = enlarge_image(rgb, f)
    panels = [("image", Image.fromarray(big))]
    pred_colors = truth_colors if predicted_colors is None else predicted_colors
    for title, masks, colors in (
        ("ground truth", truth, truth_colors),
        ("prediction", predicted, pred_colors),
    ):
        big_masks = enlarge(np.asarray(masks, bool), f)
        pic = overlay(faded(big), big_masks, colors=colors, alpha=0.6, outline=max(1, f // 2))
        panels.append((title, pic))
    if clicks:
        dots = [(y * f + f // 2, x * f + f // 2, p) for y, x, p in clicks]
        panels = [(t, draw_clicks(p, dots, radius=max(3, 2 * f))) for t, p in panels]
    row = grid([titled(p, t) for t, p in panels], len(panels), pad=4)
    return stack([row, legend(entries, row.width)])


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

    small = font(12)
    draw.rectangle((left, top, w - right, h - bottom), outline=(0, 0, 0))
    draw.text((left, 4), title, fill=(0, 0, 0), font=font(14))
    draw.text((2, top), f"{y1:.3g}", fill=(0, 0, 0), font=small)
    draw.text((2, h - bottom - 12), f"{y0:.3g}", fill=(0, 0, 0), font=small)
    draw.text((left, h - bottom + 4), f"{x0:.0f}", fill=(0, 0, 0), font=small)
    draw.text((w - right - 30, h - bottom + 4), f"{x1:.0f}", fill=(0, 0, 0), font=small)
    for k, ((name, pts), color) in enumerate(zip(series.items(), palette(len(series)))):
        if len(pts) > 1:
            draw.line([at(x, y) for x, y in pts], fill=color, width=2)
        draw.text((w - right + 6, top + 15 * k), name, fill=color, font=small)
    return out


def save(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
