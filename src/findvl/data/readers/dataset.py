"""Everything known about each image of a split, gathered from the standard files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from findvl.data.readers.coco import PanopticImage, Ref, read_captions, read_panoptic, read_refs
from findvl.data.readers.findbench import EntityCaption, read_entity


def _first_existing(*candidates: Path) -> Path:
    return next((p for p in candidates if p.exists()), candidates[0])


def _optional(path: Path) -> Path | None:
    return path if path.is_file() else None


@dataclass(frozen=True)
class DatasetPaths:
    """Where the files of one split are; optional files are None when absent."""

    image_dir: Path
    panoptic_json: Path
    panoptic_dir: Path
    captions_json: Path | None = None
    refs_json: Path | None = None
    entity_json: Path | None = None
    entity_long_json: Path | None = None

    @classmethod
    def standard(cls, root: str | Path, split: str) -> DatasetPaths:
        """The synthetic layout (``images/{split}``) or the COCO one (``{split}/``,
        ``annotations/panoptic_{split}/``), with ``annotations/*_{split}.json``."""
        root = Path(root)
        ann = root / "annotations"
        return cls(
            image_dir=_first_existing(root / "images" / split, root / split),
            panoptic_json=ann / f"panoptic_{split}.json",
            panoptic_dir=_first_existing(root / f"panoptic_{split}", ann / f"panoptic_{split}"),
            captions_json=_optional(ann / f"captions_{split}.json"),
            refs_json=_optional(ann / f"refs_{split}.json"),
            entity_json=_optional(ann / f"entity_{split}.json"),
            entity_long_json=_optional(ann / f"entity_{split}_long.json"),
        )


@dataclass
class Sample:
    """One image with all its annotations."""

    panoptic: PanopticImage
    captions: list[str] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)
    entities: list[EntityCaption] = field(default_factory=list)
    entities_long: list[EntityCaption] = field(default_factory=list)

    @property
    def image_id(self) -> int:
        return self.panoptic.image_id

    @property
    def image_path(self) -> Path:
        return self.panoptic.image_path


def _check_entity_segments(
    captions: list[EntityCaption], by_id: dict[int, Sample], path: Path
) -> None:
    for i, caption in enumerate(captions):
        sample = by_id.get(caption.image_id)
        if sample is None:
            raise ValueError(
                f"{path}: annotations[{i}].image_id: {caption.image_id} has no panoptic annotation"
            )
        segment_ids = {s.id for s in sample.panoptic.segments}
        for j, span in enumerate(caption.spans):
            if span.segment_id not in segment_ids:
                raise ValueError(
                    f"{path}: annotations[{i}].phrase[{j}].annotation_id: "
                    f"{span.segment_id} is not a segment of image {caption.image_id}"
                )
            ref = span.reference
            source = by_id.get(ref.image_id) if ref is not None else None
            if source is not None and ref.annotation_id not in {
                s.id for s in source.panoptic.segments
            }:
                raise ValueError(
                    f"{path}: annotations[{i}].phrase[{j}].reference.annotation_id: "
                    f"{ref.annotation_id} is not a segment of image {ref.image_id}"
                )


def _read_checked_entity(path: Path, by_id: dict[int, Sample]) -> list[EntityCaption]:
    captions = read_entity(path).captions
    _check_entity_segments(captions, by_id, path)
    return captions


def load_dataset(root: str | Path, split: str, paths: DatasetPaths | None = None) -> list[Sample]:
    """Gather, per image of the panoptic file, its captions, refs and entity captions.

    Entity phrases must name segments of their image, and visual references segments of the
    referenced image when it is in the split (a reference to another split stays text).

    Args:
        root: dataset root (see :meth:`DatasetPaths.standard`).
        split: split name, e.g. "val" or "val2017".
        paths: explicit file locations, overriding the standard layout.

    Returns:
        samples in the order of the panoptic file.
    """
    paths = paths or DatasetPaths.standard(root, split)
    panoptic, _ = read_panoptic(paths.panoptic_json, paths.panoptic_dir, paths.image_dir)
    samples = [Sample(panoptic=p) for p in panoptic]
    by_id = {s.image_id: s for s in samples}
    if paths.captions_json is not None:
        for caption in read_captions(paths.captions_json):
            if caption.image_id in by_id:
                by_id[caption.image_id].captions.append(caption.caption)
    if paths.refs_json is not None:
        for ref in read_refs(paths.refs_json):
            if ref.image_id in by_id:
                by_id[ref.image_id].refs.append(ref)
    if paths.entity_json is not None:
        for caption in _read_checked_entity(paths.entity_json, by_id):
            by_id[caption.image_id].entities.append(caption)
    if paths.entity_long_json is not None:
        for caption in _read_checked_entity(paths.entity_long_json, by_id):
            by_id[caption.image_id].entities_long.append(caption)
    return samples
