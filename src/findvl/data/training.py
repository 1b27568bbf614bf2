"""Training examples: per image, targets for all six tasks at once, with augmentation.

Everything is plain tensors and strings (the data layer does not know the model); the trainer
turns an example into model requests. Randomness comes from one ``numpy`` generator per
example, derived from ``(seed, step, index)``, so a resumed run sees the same examples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from findvl.data.hard_negatives import colour_swaps
from findvl.data.prompts import sample_random_prompt
from findvl.data.readers.dataset import Sample
from findvl.images import read_image

_LEFT_RIGHT = re.compile(r"\b(left|right)\b")


@dataclass
class TrainExample:
    """One augmented image with targets for every task.

    Attributes:
        image: ``[3,H,W]`` uint8.
        masks: ``[N,H,W]`` bool panoptic segments (crowd segments dropped).
        classes: ``[N]`` int64 index of each segment's category in the vocabulary.
        prompts: ``k`` rasterised visual prompts ``[H,W]`` bool; ``prompt_segments`` their
            segment indices.
        phrases: grounding phrases (referring expressions, else class names);
            ``phrase_segments``; ``phrases_are_classes`` tells which kind they are.
        caption: one caption of the image; ``more_captions`` its other captions,
            ``caption_negatives`` its captions with two colours swapped
            (:mod:`findvl.data.hard_negatives`).
        entity_text: an entity caption; ``entity_spans`` character spans, ``entity_segments``,
            ``entity_strokes`` (a stroke on the entity's own object when the entity is given
            as a visual reference, else None).
        prompt_negatives: per prompt, a ``[H,W]`` bool negative region or None.
        previous: ``[H,W]`` mask logits of a previous interactive round (for the spatial
            memory; set by correction rounds), or None.
    """

    image: torch.Tensor
    masks: torch.Tensor
    classes: torch.Tensor
    prompts: list[torch.Tensor]
    prompt_segments: list[int]
    phrases: list[str]
    phrase_segments: list[int]
    phrases_are_classes: bool
    caption: str
    entity_text: str
    entity_spans: list[tuple[int, int]]
    entity_segments: list[int]
    entity_strokes: list[torch.Tensor | None]
    prompt_negatives: list[torch.Tensor | None] | None = None
    previous: torch.Tensor | None = None
    more_captions: list[str] = field(default_factory=list)
    caption_negatives: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExampleConfig:
    max_prompts: int = 4  # visual prompts per image (at least 1)
    max_phrases: int = 4  # grounding phrases per image
    max_entities: int = 6  # entities per entity caption
    visual_prob: float = 0.5  # probability that an entity is given as a visual reference
    flip: bool = True  # random horizontal flip (left/right in texts swapped)
    scale_range: tuple[float, float] = (1.0, 1.0)  # resize-scale jitter, then crop to size


def _swap_left_right(text: str) -> str:
    return _LEFT_RIGHT.sub(lambda m: "right" if m.group(1) == "left" else "left", text)


def _scale_crop(
    image: np.ndarray, masks: np.ndarray, scale: float, rng
) -> tuple[np.ndarray, np.ndarray]:
    h, w = masks.shape[-2:]
    nh, nw = max(8, round(h * scale)), max(8, round(w * scale))
    img = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    img = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    m = F.interpolate(torch.from_numpy(masks)[None].float(), size=(nh, nw), mode="nearest")[0]
    y0 = int(rng.integers(0, max(1, nh - h + 1))) if nh > h else 0
    x0 = int(rng.integers(0, max(1, nw - w + 1))) if nw > w else 0
    img, m = img[..., y0 : y0 + h, x0 : x0 + w], m[..., y0 : y0 + h, x0 : x0 + w]
    out_img = torch.zeros(1, 3, h, w)
    out_m = torch.zeros(m.shape[0], h, w)
    out_img[..., : img.shape[-2], : img.shape[-1]] = img
    out_m[:, : m.shape[-2], : m.shape[-1]] = m
    return out_img[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy(), out_m.bool().numpy()


def make_example(
    sample: Sample,
    vocabulary: dict[int, int],
    class_names: list[str],
    rng: np.random.Generator,
    config: ExampleConfig = ExampleConfig(),
) -> TrainExample:
    """Build one augmented :class:`TrainExample` from a dataset sample.

    Args:
        sample: the image and its annotations.
        vocabulary: category id -> class index.
        class_names: class index -> name (used when the image has no referring expressions).
        rng: the example's random generator.
    """
    image = read_image(sample.image_path)
    segments = [s for s in sample.panoptic.segments if not s.iscrowd]
    masks = sample.panoptic.load_masks()
    keep = [i for i, s in enumerate(sample.panoptic.segments) if not s.iscrowd]
    masks = masks[keep]
    flip = config.flip and rng.random() < 0.5
    if flip:
        image, masks = image[:, ::-1].copy(), masks[:, :, ::-1].copy()
    lo, hi = config.scale_range
    if hi > lo or lo != 1.0:
        image, masks = _scale_crop(image, masks, float(rng.uniform(lo, hi)), rng)
    present = masks.reshape(len(masks), -1).any(1)
    segments = [s for s, p in zip(segments, present) if p]
    masks = masks[present]
    index_of = {s.id: i for i, s in enumerate(segments)}
    text = _swap_left_right if flip else (lambda t: t)

    things = [i for i, s in enumerate(segments) if s.isthing]
    pool = things or list(range(len(segments)))
    # visual prompts: any segment, thing or stuff (as the official sampler's random panoptic
    # instances, and as the evaluation clicks every non-crowd segment)
    everything = list(range(len(segments)))
    k = int(rng.integers(1, config.max_prompts + 1)) if everything else 0
    chosen = (
        [int(i) for i in rng.choice(everything, size=min(k, len(everything)), replace=False)]
        if everything
        else []
    )
    prompts = [torch.from_numpy(sample_random_prompt(masks[i], rng)[1]) for i in chosen]

    refs = [(r, index_of[r.ann_id]) for r in sample.refs if r.ann_id in index_of and r.sentences]
    if refs:
        picks = rng.permutation(len(refs))[: config.max_phrases]
        phrases = [
            text(refs[p][0].sentences[int(rng.integers(len(refs[p][0].sentences)))].sent)
            for p in picks
        ]
        phrase_segments = [refs[p][1] for p in picks]
        are_classes = False
    else:
        picks = rng.permutation(pool)[: config.max_phrases] if pool else []
        phrases = [class_names[vocabulary[segments[i].category_id]] for i in picks]
        phrase_segments = [int(i) for i in picks]
        are_classes = True

    picked = int(rng.integers(len(sample.captions))) if sample.captions else -1
    caption = text(sample.captions[picked]) if sample.captions else ""
    more_captions = [text(c) for i, c in enumerate(sample.captions) if i != picked]
    entity_text, spans, ent_segments, strokes = "", [], [], []
    usable = [c for c in sample.entities if any(p.segment_id in index_of for p in c.spans)]
    if usable:
        cap = usable[int(rng.integers(len(usable)))]
        entity_text = text(cap.sentence)
        for p in [p for p in cap.spans if p.segment_id in index_of][: config.max_entities]:
            seg = index_of[p.segment_id]
            spans.append((p.start, p.end))
            ent_segments.append(seg)
            visual = rng.random() < config.visual_prob
            strokes.append(
                torch.from_numpy(sample_random_prompt(masks[seg], rng)[1]) if visual else None
            )
    classes = torch.tensor([vocabulary[s.category_id] for s in segments], dtype=torch.long)
    return TrainExample(
        image=torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous(),
        masks=torch.from_numpy(np.array(masks)),
        classes=classes,
        prompts=prompts,
        prompt_segments=chosen,
        phrases=phrases,
        phrase_segments=phrase_segments,
        phrases_are_classes=are_classes,
        caption=caption,
        entity_text=entity_text,
        entity_spans=spans,
        entity_segments=ent_segments,
        entity_strokes=strokes,
        more_captions=more_captions,
        caption_negatives=colour_swaps([caption, *more_captions]) if caption else [],
    )
