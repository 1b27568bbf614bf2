"""Rasterise one synthetic scene: textured stuff regions tiling the canvas, occluding shapes.

Everything is vectorised numpy or PIL ``ImageDraw``; a scene is a pure function of the
``numpy.random.Generator`` it is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from findvl.data.synth_world import COLOURS, SIZES, STUFF_CATEGORIES, THING_CATEGORIES

# An object whose visible part is smaller than this fraction of the image is dropped ...
MIN_VISIBLE_FRACTION = 0.0015
# ... and so is one of which less than this fraction of its own area stays visible.
MIN_VISIBLE_RATIO = 0.25
NOISE_STD = 6.0  # per-pixel Gaussian noise added to the final image (0..255 scale)
COLOUR_JITTER = 18  # max per-channel offset of an object's colour from its base colour


@dataclass(frozen=True)
class ShapeSpec:
    """What to draw for one object (before occlusion).

    Attributes:
        category_id: thing category (its name is the shape).
        shape: shape name, e.g. "star".
        colour: colour name, a key of ``COLOURS``.
        size: size name, a key of ``SIZES``.
        centre: ``(y, x)`` in pixels.
        radius: circumradius in pixels.
        angle: rotation in radians (ignored by circle and ring).
    """

    category_id: int
    shape: str
    colour: str
    size: str
    centre: tuple[float, float]
    radius: float
    angle: float


@dataclass
class SceneSegment:
    """One visible segment of a scene.

    Attributes:
        category_id: its category.
        isthing: True for a shape, False for a stuff region.
        mask: ``[H,W]`` bool, the visible pixels.
        spec: the shape drawn (things only).
    """

    category_id: int
    isthing: bool
    mask: np.ndarray
    spec: ShapeSpec | None = None


@dataclass
class Scene:
    """A rendered scene: ``image`` ``[H,W,3]`` uint8 and its segments (things first, in drawing
    order, then stuff); the segments' masks are disjoint and cover the image."""

    image: np.ndarray
    segments: list[SceneSegment]


def _polygon(spec: ShapeSpec) -> list[tuple[float, float]]:
    """Vertices ``(x, y)`` of a polygonal shape."""
    r = spec.radius
    if spec.shape == "square":
        radii, angles = np.full(4, r), np.arange(4) * np.pi / 2 + np.pi / 4
    elif spec.shape == "triangle":
        radii, angles = np.full(3, r), np.arange(3) * 2 * np.pi / 3 - np.pi / 2
    elif spec.shape == "hexagon":
        radii, angles = np.full(6, r), np.arange(6) * np.pi / 3
    elif spec.shape == "star":
        radii, angles = np.tile([r, 0.45 * r], 5), np.arange(10) * np.pi / 5 - np.pi / 2
    elif spec.shape == "diamond":
        radii, angles = np.array([r, 0.6 * r, r, 0.6 * r]), np.arange(4) * np.pi / 2 - np.pi / 2
    elif spec.shape == "cross":
        a = 0.35 * r  # half-width of an arm
        corners = np.array([(a, r), (a, a), (r, a), (r, -a), (a, -a), (a, -r)])
        pts = np.concatenate([corners, -corners])
        radii, angles = np.hypot(pts[:, 0], pts[:, 1]), np.arctan2(pts[:, 1], pts[:, 0])
    else:
        raise ValueError(f"shape: no polygon for {spec.shape!r}")
    angles = angles + spec.angle
    cy, cx = spec.centre
    return [(cx + q * np.cos(t), cy + q * np.sin(t)) for q, t in zip(radii, angles)]


def shape_mask(spec: ShapeSpec, height: int, width: int) -> np.ndarray:
    """Rasterise a shape (without occlusion) to a ``[H,W]`` bool mask."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    cy, cx, r = spec.centre[0], spec.centre[1], spec.radius
    if spec.shape in ("circle", "ring"):
        box = (cx - r, cy - r, cx + r, cy + r)
        ring_width = max(2, round(0.4 * r)) if spec.shape == "ring" else 0
        if ring_width:
            draw.ellipse(box, outline=255, width=ring_width)
        else:
            draw.ellipse(box, fill=255)
    else:
        draw.polygon(_polygon(spec), fill=255)
    return np.asarray(canvas) > 0


def unit_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance uniform float32 noise (cheaper to draw than Gaussian)."""
    return (rng.random(size=shape, dtype=np.float32) - 0.5) * np.float32(12**0.5)


def stuff_layout(rng: np.random.Generator, height: int, width: int, regions: int) -> np.ndarray:
    """``[H,W]`` int region index in ``0..regions-1``: bands with wavy borders tiling the canvas."""
    yy, xx = (g.astype(np.float32) for g in np.ogrid[0:height, 0:width])
    if rng.random() < 0.5:  # horizontal bands: the border runs along x
        along, across, extent = xx, yy, height
    else:
        along, across, extent = yy, xx, width
    labels = np.zeros((height, width), dtype=np.int64)
    cuts = np.sort(rng.uniform(0.25, 0.75, size=regions - 1)) if regions > 1 else []
    for i, cut in enumerate(cuts):
        cut = cut + 0.2 * i / max(1, regions - 1) - 0.1  # keep bands apart
        amp = rng.uniform(0.02, 0.08) * extent
        freq, phase = rng.uniform(0.02, 0.08), rng.uniform(0, 2 * np.pi)
        border = cut * extent + amp * np.sin(freq * along + phase)
        labels += (across > border).astype(np.int64)
    return labels


def stuff_texture(
    name: str, rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The texture of a stuff category: base colour ``[3]`` and lightness offsets ``[H,W]``
    (float32, 0..255 scale); the texture is ``base + light[..., None]``."""
    yy, xx = (g.astype(np.float32) for g in np.ogrid[0:height, 0:width])
    fine = unit_noise(rng, (height, width))
    if name == "grass":
        light = 18 * unit_noise(rng, (1, width)) + 8 * fine
        base = (70, 145, 55)
    elif name == "water":
        phase = rng.uniform(0, 2 * np.pi)
        light = 18 * np.sin(0.45 * yy + 2.5 * np.sin(0.08 * xx + phase)) + 4 * fine
        base = (55, 115, 195)
    elif name == "sand":
        light = 12 * fine + 8 * np.sin(0.05 * (xx + yy) + rng.uniform(0, 6))
        base = (215, 190, 140)
    elif name == "brick":
        course = 8
        offset = (yy // course % 2) * course
        mortar = (yy % course < 1.5) | ((xx + offset) % (2 * course) < 1.5)
        light = 70 * mortar + 6 * fine
        base = (165, 75, 55)
    else:
        raise ValueError(f"stuff: unknown texture {name!r}")
    return np.asarray(base, dtype=np.float32), light.astype(np.float32, copy=False)


def _sample_spec(
    rng: np.random.Generator,
    side: int,
    excluded: frozenset[tuple[str, str]],
    combo: tuple[str, str] | None,
) -> ShapeSpec:
    colours = list(COLOURS)
    if combo is not None:
        colour, shape = combo
    else:
        shape = THING_CATEGORIES[rng.integers(len(THING_CATEGORIES))].name
        allowed = [c for c in colours if (c, shape) not in excluded]
        colour = allowed[rng.integers(len(allowed))]
    category_id = next(c.id for c in THING_CATEGORIES if c.name == shape)
    size = list(SIZES)[rng.integers(len(SIZES))]
    radius = SIZES[size] * side * rng.uniform(0.9, 1.1)
    centre = tuple(float(v) for v in rng.uniform(0.5 * radius, side - 0.5 * radius, size=2))
    angle = float(rng.uniform(-np.pi / 8, np.pi / 8))
    return ShapeSpec(category_id, shape, colour, size, centre, float(radius), angle)


def _visible(masks: list[np.ndarray], height: int, width: int) -> list[np.ndarray]:
    """Later masks occlude earlier ones; return the visible part of each."""
    labels = np.zeros((height, width), dtype=np.int64)
    for k, mask in enumerate(masks):
        labels[mask] = k + 1
    return [labels == k + 1 for k in range(len(masks))]


def sample_scene(
    rng: np.random.Generator,
    *,
    size: int = 128,
    excluded_combos: frozenset[tuple[str, str]] = frozenset(),
    required_combo: tuple[str, str] | None = None,
) -> Scene:
    """Draw one scene of 1-8 shapes on 1-3 stuff regions.

    Args:
        rng: the only source of randomness.
        size: image side in pixels (images are square).
        excluded_combos: ``(colour, shape)`` pairs never drawn (unless required).
        required_combo: a pair drawn as the last (topmost, so always visible) object.
    """
    while True:
        count = int(rng.integers(1, 9))
        specs = [_sample_spec(rng, size, excluded_combos, None) for _ in range(count)]
        if required_combo is not None:
            specs[-1] = _sample_spec(rng, size, excluded_combos, required_combo)
        full = [shape_mask(s, size, size) for s in specs]
        visible = _visible(full, size, size)
        keep = [
            i
            for i, (f, v) in enumerate(zip(full, visible))
            if v.sum() >= MIN_VISIBLE_FRACTION * size * size
            and v.sum() >= MIN_VISIBLE_RATIO * f.sum()
        ]
        if keep and (required_combo is None or keep[-1] == count - 1):
            break
    specs = [specs[i] for i in keep]
    visible = _visible([full[i] for i in keep], size, size)
    return _render(rng, specs, visible, size)


def _render(
    rng: np.random.Generator, specs: list[ShapeSpec], visible: list[np.ndarray], size: int
) -> Scene:
    regions = int(rng.integers(1, 4))
    layout = stuff_layout(rng, size, size, regions)
    stuff = rng.choice(len(STUFF_CATEGORIES), size=regions, replace=False)
    # One palette row per stuff region, then one per object; `index` picks a row per pixel.
    palette = np.zeros((regions + len(specs), 3), dtype=np.float32)
    light = np.zeros((size, size), dtype=np.float32)
    for r, s in enumerate(stuff):
        palette[r], region_light = stuff_texture(STUFF_CATEGORIES[s].name, rng, size, size)
        light = np.where(layout == r, region_light, light)
    index = layout.copy()
    segments = []
    for k, (spec, mask) in enumerate(zip(specs, visible)):
        jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
        palette[regions + k] = np.asarray(COLOURS[spec.colour], dtype=np.float32) + jitter
        index[mask] = regions + k
        segments.append(SceneSegment(spec.category_id, True, mask, spec))
    things = index >= regions
    light[things] = 0.0
    for r, s in enumerate(stuff):
        mask = (layout == r) & ~things
        if mask.any():
            segments.append(SceneSegment(STUFF_CATEGORIES[s].id, False, mask))
    image = palette[index] + light[:, :, None]  # HxW -> HxWx3
    image += NOISE_STD * unit_noise(rng, image.shape)
    return Scene(np.clip(image + 0.5, 0, 255).astype(np.uint8), segments)
