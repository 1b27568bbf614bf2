"""Rasterise one synthetic scene: textured stuff regions tiling the canvas, occluding shapes.

A scene is a pure function of the ``numpy.random.Generator`` it is given. Each shape is drawn
once with PIL ``ImageDraw`` into a small canvas clipped to the image (a :class:`Stamp`) and the
stamps are pasted, in drawing order, into one ``uint8`` label map, so occlusion, visible areas
and segment masks all come from that map. The picture is then a few whole-image numpy
operations over the label map.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from findvl.data.synth.world import COLOURS, SIZES, STUFF_CATEGORIES, THING_CATEGORIES

# An object whose visible part is smaller than this fraction of the image is dropped ...
MIN_VISIBLE_FRACTION = 0.0015
# ... and so is one of which less than this fraction of its own (in-image) area stays visible.
MIN_VISIBLE_RATIO = 0.25
COLOUR_JITTER = 18  # max per-channel offset of an object's colour from its base colour
MAX_OBJECTS = 8
NOISE_STD = 6.0  # per-pixel noise added to the final image (0..255 scale)


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


@dataclass(frozen=True)
class SceneSegment:
    """One visible segment of a scene.

    Attributes:
        category_id: its category.
        isthing: True for a shape, False for a stuff region.
        spec: the shape drawn (things only).
    """

    category_id: int
    isthing: bool
    spec: ShapeSpec | None = None


@dataclass
class Scene:
    """A rendered scene.

    Attributes:
        image: ``[H,W,3]`` uint8 RGB.
        labels: ``[H,W]`` uint8; a pixel of ``segments[k - 1]`` holds ``k``. Every pixel
            belongs to exactly one segment (no zeros).
        segments: things first, in drawing order, then the visible stuff regions.
    """

    image: np.ndarray
    labels: np.ndarray
    segments: list[SceneSegment]

    def masks(self) -> np.ndarray:
        """``[K,H,W]`` bool, the mask of each segment (disjoint, covering the image)."""
        ks = np.arange(1, len(self.segments) + 1, dtype=np.uint8)
        return self.labels[None] == ks[:, None, None]


def _polygon(spec: ShapeSpec) -> list[tuple[float, float]]:
    """Vertices ``(x, y)`` of a polygonal shape, in image pixels."""
    r, pi = spec.radius, math.pi
    if spec.shape == "square":
        polar = [(r, i * pi / 2 + pi / 4) for i in range(4)]
    elif spec.shape == "triangle":
        polar = [(r, i * 2 * pi / 3 - pi / 2) for i in range(3)]
    elif spec.shape == "hexagon":
        polar = [(r, i * pi / 3) for i in range(6)]
    elif spec.shape == "star":
        polar = [(r if i % 2 == 0 else 0.45 * r, i * pi / 5 - pi / 2) for i in range(10)]
    elif spec.shape == "diamond":
        polar = [(r if i % 2 == 0 else 0.6 * r, i * pi / 2 - pi / 2) for i in range(4)]
    elif spec.shape == "cross":
        a = 0.35 * r  # half-width of an arm
        corners = [(a, r), (a, a), (r, a), (r, -a), (a, -a), (a, -r)]
        points = corners + [(-x, -y) for x, y in corners]
        polar = [(math.hypot(x, y), math.atan2(y, x)) for x, y in points]
    else:
        raise ValueError(f"shape: no polygon for {spec.shape!r}")
    cy, cx = spec.centre
    return [
        (cx + q * math.cos(t + spec.angle), cy + q * math.sin(t + spec.angle)) for q, t in polar
    ]


@dataclass(frozen=True)
class Stamp:
    """A shape rasterised inside its bounding box, clipped to the image.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in image pixels (end exclusive).
        mask: an "L" image of the box's size, 255 inside the shape and 0 elsewhere.
        area: pixels of the shape inside the image.
    """

    box: tuple[int, int, int, int]
    mask: Image.Image
    area: int


def shape_stamp(spec: ShapeSpec, height: int, width: int) -> Stamp:
    """Rasterise a shape (without occlusion) into a :class:`Stamp`."""
    cy, cx, r = spec.centre[0], spec.centre[1], spec.radius
    points = None if spec.shape in ("circle", "ring") else _polygon(spec)
    if points is None:
        left, top, right, bottom = cx - r, cy - r, cx + r, cy + r
    else:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        left, top, right, bottom = min(xs), min(ys), max(xs), max(ys)
    x0, y0 = max(0, math.floor(left) - 1), max(0, math.floor(top) - 1)
    x1, y1 = min(width, math.ceil(right) + 2), min(height, math.ceil(bottom) + 2)
    canvas = Image.new("L", (max(1, x1 - x0), max(1, y1 - y0)), 0)
    draw = ImageDraw.Draw(canvas)
    if points is None:
        box = (cx - r - x0, cy - r - y0, cx + r - x0, cy + r - y0)
        if spec.shape == "ring":
            draw.ellipse(box, outline=255, width=max(2, round(0.4 * r)))
        else:
            draw.ellipse(box, fill=255)
    else:
        draw.polygon([(x - x0, y - y0) for x, y in points], fill=255)
    area = canvas.histogram()[255] if x1 > x0 and y1 > y0 else 0
    return Stamp((x0, y0, x1, y1), canvas, area)


def compose(
    stamps: list[Stamp], height: int, width: int, *, under: Image.Image | None = None
) -> Image.Image:
    """Paste stamps in order (later ones occlude earlier ones) into an "L" label image where
    the pixels of ``stamps[k - 1]`` hold ``k`` and uncovered pixels keep their value in
    ``under`` (default 0)."""
    if len(stamps) > 250:
        raise ValueError(f"stamps: at most 250 fit a uint8 label map, got {len(stamps)}")
    labels = Image.new("L", (width, height), 0) if under is None else under.copy()
    for k, stamp in enumerate(stamps, start=1):
        if stamp.area:
            labels.paste(k, stamp.box, stamp.mask)
    return labels


BYTE_STD = math.sqrt((256**2 - 1) / 12)  # std of a uniform random byte (~73.9)


def byte_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform int8 noise in ``-128..127`` (std ``BYTE_STD``, mean -0.5), one random byte per
    value: an order of magnitude cheaper than drawing floats."""
    return np.frombuffer(rng.bytes(math.prod(shape)), dtype=np.int8).reshape(shape)


@functools.lru_cache(maxsize=4)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel row ``[H,1]`` and column ``[1,W]`` coordinates, float32."""
    return tuple(g.astype(np.float32) for g in np.ogrid[0:height, 0:width])


def stuff_layout(rng: np.random.Generator, height: int, width: int, regions: int) -> np.ndarray:
    """``[H,W]`` uint8 region index in ``0..regions-1``: bands with wavy borders."""
    yy, xx = _grid(height, width)
    if rng.random() < 0.5:  # horizontal bands: the border runs along x
        along, across, extent = xx, yy, height
    else:
        along, across, extent = yy, xx, width
    labels = np.zeros((height, width), dtype=np.uint8)
    cuts = np.sort(rng.uniform(0.25, 0.75, size=regions - 1)) if regions > 1 else []
    for i, cut in enumerate(cuts):
        cut = cut + 0.2 * i / max(1, regions - 1) - 0.1  # keep bands apart
        amp = rng.uniform(0.02, 0.08) * extent
        freq, phase = rng.uniform(0.02, 0.08), rng.uniform(0, 2 * np.pi)
        border = cut * extent + amp * np.sin(freq * along + phase)
        labels += across > border
    return labels


# Periodic stuff patterns: lightness offsets as a function of (y, x) and the period along x.
_PATTERNS = {
    "water": (lambda y, x: 18 * np.sin(0.45 * y + 2.5 * np.sin(0.08 * x)), 2 * math.pi / 0.08),
    "sand": (lambda y, x: 8 * np.sin(0.05 * (x + y)), 2 * math.pi / 0.05),
    "brick": (lambda y, x: 70 * ((y % 8 < 1.5) | ((x + y // 8 % 2 * 8) % 16 < 1.5)), 16),
}
# Stuff name -> (base colour, weight of the fine noise, weight of per-column noise).
_STUFF_LOOK = {
    "grass": ((70, 145, 55), 8.0, 18.0),
    "water": ((55, 115, 195), 4.0, 0.0),
    "sand": ((215, 190, 140), 12.0, 0.0),
    "brick": ((165, 75, 55), 6.0, 0.0),
}


@functools.lru_cache(maxsize=16)
def _pattern(name: str, height: int, width: int) -> np.ndarray:
    """``[H, W + period]`` float32 pattern of a stuff category; ``[:, s : s + W]`` is the pattern
    shifted by ``s`` columns. Cached per size (read-only)."""
    function, period = _PATTERNS[name]
    yy, _ = _grid(height, 1)
    xx = np.arange(width + math.ceil(period), dtype=np.float32)[None]
    pattern = np.broadcast_to(function(yy, xx), (height, xx.shape[1])).astype(np.float32)
    pattern.flags.writeable = False
    return pattern


def stuff_texture(
    name: str, rng: np.random.Generator, fine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The texture of a stuff category: a periodic pattern at a random shift plus noise.

    Args:
        fine: ``[H,W]`` int8 noise (see :func:`byte_noise`) shared by the regions of a scene.

    Returns:
        base colour ``[3]`` and lightness offsets ``[H,W]`` (float32, 0..255 scale); the
        texture is ``base + light[..., None]``.
    """
    if name not in _STUFF_LOOK:
        raise ValueError(f"stuff: unknown texture {name!r}")
    height, width = fine.shape
    base, fine_weight, column_weight = _STUFF_LOOK[name]
    light = fine * np.float32(fine_weight / BYTE_STD)  # int8 * float32 -> float32
    if name in _PATTERNS:
        pattern = _pattern(name, height, width)
        shift = int(rng.integers(pattern.shape[1] - width + 1))
        light += pattern[:, shift : shift + width]
    if column_weight:
        light += byte_noise(rng, (1, width)) * np.float32(column_weight / BYTE_STD)
    return np.asarray(base, dtype=np.float32), light


def _sample_spec(
    rng: np.random.Generator,
    side: int,
    excluded: frozenset[tuple[str, str]],
    combo: tuple[str, str] | None,
) -> ShapeSpec:
    """Draw one object. All its choices come from one call for seven uniforms (a scene draws
    up to eight objects, and each generator call costs more than the arithmetic)."""
    u = rng.random(7).tolist()
    if combo is not None:
        colour, shape = combo
    else:
        shape = THING_CATEGORIES[int(u[0] * len(THING_CATEGORIES))].name
        allowed = [c for c in COLOURS if (c, shape) not in excluded]
        colour = allowed[int(u[1] * len(allowed))]
    size = _SIZE_NAMES[int(u[2] * len(_SIZE_NAMES))]
    radius = SIZES[size] * side * (0.9 + 0.2 * u[3])
    low, high = 0.5 * radius, side - 0.5 * radius
    centre = (low + (high - low) * u[4], low + (high - low) * u[5])
    angle = (u[6] - 0.5) * np.pi / 4  # within +-22.5 degrees
    return ShapeSpec(_THING_ID[shape], shape, colour, size, centre, radius, angle)


_THING_ID = {c.name: c.id for c in THING_CATEGORIES}
_SIZE_NAMES = tuple(SIZES)


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
    min_area = MIN_VISIBLE_FRACTION * size * size
    while True:
        count = int(rng.integers(1, MAX_OBJECTS + 1))
        specs = [_sample_spec(rng, size, excluded_combos, None) for _ in range(count)]
        if required_combo is not None:
            specs[-1] = _sample_spec(rng, size, excluded_combos, required_combo)
        stamps = [shape_stamp(s, size, size) for s in specs]
        visible = compose(stamps, size, size).histogram()[1:]
        keep = [
            i
            for i, stamp in enumerate(stamps)
            if visible[i] >= min_area and visible[i] >= MIN_VISIBLE_RATIO * stamp.area
        ]
        if keep and (required_combo is None or keep[-1] == count - 1):
            break
    return _render(rng, [specs[i] for i in keep], [stamps[i] for i in keep], size)


def _render(
    rng: np.random.Generator, specs: list[ShapeSpec], stamps: list[Stamp], size: int
) -> Scene:
    """Paint the shapes over textured stuff regions and add noise (one value per pixel, shared
    by the channels)."""
    regions = int(rng.integers(1, 4))
    layout = stuff_layout(rng, size, size, regions)
    stuff = rng.choice(len(STUFF_CATEGORIES), size=regions, replace=False)
    fine = byte_noise(rng, (size, size))
    bases, lights = zip(*(stuff_texture(STUFF_CATEGORIES[s].name, rng, fine) for s in stuff))
    jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=(len(specs), 3))
    noise = byte_noise(rng, (size, size))

    # Stuff region r goes under the shapes as 255 - r; the regions still visible are then
    # relabelled to follow the things.
    canvas = compose(stamps, size, size, under=Image.fromarray(255 - layout))
    counts = canvas.histogram()
    present = [r for r in range(regions) if counts[255 - r]]
    relabel = np.arange(256, dtype=np.uint8)
    relabel[[255 - r for r in present]] = len(specs) + 1 + np.arange(len(present))
    labels = np.take(relabel, np.asarray(canvas))
    background = labels > len(specs)

    palette = np.zeros((len(specs) + len(present) + 1, 3), dtype=np.int16)  # a row per label
    palette[1 : len(specs) + 1] = [COLOURS[spec.colour] for spec in specs]
    palette[1 : len(specs) + 1] += jitter
    palette[len(specs) + 1 : len(specs) + 1 + len(present)] = [bases[r] for r in present]
    light = lights[0]
    for r in range(1, regions):
        light = np.where(layout == r, lights[r], light)
    offset = noise * np.float32(NOISE_STD / BYTE_STD)  # int8 * float32 -> float32
    np.add(offset, light, out=offset, where=background)
    # int16, not float: the sums need room outside 0..255, and a float32 image would be big
    # enough to be mmap-allocated (and page-faulted) afresh for every scene.
    image = np.take(palette, labels, axis=0)  # HxW -> HxWx3
    image += np.rint(offset).astype(np.int16)[:, :, None]
    np.clip(image, 0, 255, out=image)

    segments = [SceneSegment(spec.category_id, True, spec) for spec in specs]
    segments += [SceneSegment(STUFF_CATEGORIES[stuff[r]].id, False) for r in present]
    return Scene(image.astype(np.uint8), labels, segments)
